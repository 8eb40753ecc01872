"""Config fields take the TOML type they document, and every number is finite.

These tests walk the Settings model, so a field added later is covered without editing them.
"""

from __future__ import annotations

import math
import tomllib
import types
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from infrawatch import config
from infrawatch.config import ConfigError, Settings, load, override_value
from infrawatch.units import is_duration

# One value of each TOML type; the scalars are the ones a lax validator would convert
# ("1" to 1 or True, 1.0 to 1, True to 1, a number to a timestamp).
TOML_VALUES: dict[str, Any] = {
    "string": "1",
    "integer": 1,
    "float": 1.0,
    "boolean": True,
    "datetime": datetime(2026, 1, 1, tzinfo=UTC),
    "array": ["1"],
    "table": {},
}
DURATION = frozenset({"integer", "float", "string"})


@pytest.fixture(autouse=True)
def _no_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "default_config_path", lambda: None)


def _toml_types(annotation: Any) -> frozenset[str]:
    """The TOML types a setting of this annotation documents."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *metadata = typing.get_args(annotation)
        return DURATION if is_duration(metadata) else _toml_types(base)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return frozenset().union(*(_toml_types(a) for a in members))
    if origin is Literal:
        assert all(isinstance(v, str) for v in typing.get_args(annotation))
        return frozenset({"string"})
    if origin is list:
        return frozenset({"array"})
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return frozenset({"table"})
    simple = {
        bool: {"boolean"},
        int: {"integer"},
        float: {"integer", "float"},
        str: {"string"},
        Path: {"string"},
        SecretStr: {"string"},
        datetime: {"datetime", "string"},  # a TOML datetime, or RFC 3339 text (from JSON)
    }
    if annotation in simple:
        return frozenset(simple[annotation])
    raise AssertionError(f"no TOML type known for {annotation!r}: extend _toml_types")


def _field_types(field: FieldInfo) -> frozenset[str]:
    return DURATION if is_duration(field.metadata) else _toml_types(field.annotation)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _item_model(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is list:
        return _model_of(typing.get_args(annotation)[0])
    return None


def _fill(
    model: type[BaseModel], value: Any, wanted: typing.Callable[[FieldInfo], bool], prefix: str
) -> tuple[dict[str, Any], set[str]]:
    """A document setting every leaf for which `wanted(field)` to `value`; and their paths.

    Lists of tables get one entry with every field set, so their fields are walked too.
    """
    data: dict[str, Any] = {}
    paths: set[str] = set()
    for name, field in model.model_fields.items():
        key = field.alias or name
        sub, item = _model_of(field.annotation), _item_model(field.annotation)
        if sub is not None:
            data[key], found = _fill(sub, value, wanted, f"{prefix}{key}.")
        elif item is not None:
            entry, found = _fill(item, value, wanted, f"{prefix}{key}[0].")
            data[key] = [entry]
        elif wanted(field):
            data[key], found = value, {f"{prefix}{key}"}
        else:
            continue
        paths |= found
    return data, paths


def _problem_paths(data: dict[str, Any]) -> set[str]:
    with pytest.raises(ConfigError) as info:
        load(None, data)
    for problem in info.value.problems:
        assert "\n" not in problem
    return {p.partition(": ")[0].partition(" (from ")[0] for p in info.value.problems}


@pytest.mark.parametrize("toml_type", sorted(TOML_VALUES))
def test_every_setting_rejects_the_toml_types_it_does_not_document(toml_type: str) -> None:
    value = TOML_VALUES[toml_type]
    data, expected = _fill(Settings, value, lambda f: toml_type not in _field_types(f), "")
    assert expected, "the walk found no settings"
    missing = expected - _problem_paths(data)
    assert not missing, f"accepted a TOML {toml_type} ({value!r}) for: {sorted(missing)}"


def test_the_documented_forms_still_load(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[storage]\npath = '/var/lib/iw.db'\nretention = '2d'\n"
        "[host]\ninterval = 2.5\nprocess_interval = 30\nenabled = false\ntop_processes = 3\n"
        "[analysis.zscore]\nthreshold = 4\n"
        "[[alerting.silences]]\nmatchers = ['a=\"b\"']\nstarts_at = 2026-01-01T00:00:00Z\n"
        "[[alerting.silences]]\nmatchers = ['a=\"b\"']\nends_at = '2026-01-02T00:00:00+02:00'\n"
    )
    s = load(path).settings
    assert s.storage.path == Path("/var/lib/iw.db")
    assert (s.storage.retention, s.host.interval, s.host.process_interval) == (172800, 2.5, 30)
    assert (s.host.enabled, s.host.top_processes, s.analysis.zscore.threshold) == (False, 3, 4.0)
    assert s.alerting.silences[0].starts_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert s.alerting.silences[1].ends_at == datetime(2026, 1, 1, 22, tzinfo=UTC)


def test_environment_values_are_text_and_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRAWATCH_AGENT__QUEUE_SIZE", "50")
    monkeypatch.setenv("INFRAWATCH_HOST__PER_CPU", "false")
    monkeypatch.setenv("INFRAWATCH_HOST__INTERVAL", "1m")
    monkeypatch.setenv("INFRAWATCH_STORAGE__PATH", "/data/iw.db")
    monkeypatch.setenv("INFRAWATCH_ANALYSIS__ZSCORE__THRESHOLD", "4.5")
    s = load().settings
    assert (s.agent.queue_size, s.host.per_cpu, s.host.interval) == (50, False, 60.0)
    assert (s.storage.path, s.analysis.zscore.threshold) == (Path("/data/iw.db"), 4.5)


def test_set_values_are_toml_literals_or_text() -> None:
    assert override_value(["host", "interval"], "30s") == "30s"
    assert override_value(["host", "interval"], "1.5") == 1.5
    assert override_value(["host", "enabled"], "false") is False
    assert override_value(["host", "enabled"], "yes") is True  # as INFRAWATCH_HOST__ENABLED=yes
    assert override_value(["agent", "queue_size"], "lots") == "lots"  # validation says why
    assert override_value(["host", "metrics"], '["cpu", "load"]') == ["cpu", "load"]
    # Where the setting is text, what was typed is the text, even if it looks like a number.
    assert override_value(["storage", "path"], "42") == "42"
    assert override_value(["cloud", "aws", "profile"], "2024") == "2024"
    assert override_value(["alerting", "external_labels", "rack"], "7") == "7"
    assert override_value(["http", "listen"], '"127.0.0.1:1"') == "127.0.0.1:1"
    # Elsewhere a number stays a number, and text is checked as such.
    assert override_value(["agent", "queue_size"], "5") == 5
    assert override_value(["no", "such"], "5") == 5
    s = load(None, {"storage": {"path": override_value(["storage", "path"], "42")}}).settings
    assert s.storage.path == Path("42")


# Non-finite numbers as they arrive: TOML inf/nan and an overflowing literal, and text.
NON_FINITE: list[Any] = [
    math.inf,
    -math.inf,
    math.nan,
    tomllib.loads("v = 1e400")["v"],
    "inf",
    "nan",
    "1e400",
]


def _is_number(field: FieldInfo) -> bool:
    return "float" in _field_types(field)


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_every_duration_and_level_rejects_non_finite_numbers(value: Any) -> None:
    data, expected = _fill(Settings, value, _is_number, "")
    durations = {p for p in expected if p.endswith(("interval", "timeout", "deadline"))}
    assert {"host.interval", "agent.shutdown_deadline", "alerting.sinks[0].timeout"} <= durations
    assert {"analysis.threshold[0].warning", "alerting.retry.multiplier"} <= expected
    missing = expected - _problem_paths(data)
    assert not missing, f"accepted {value!r} for: {sorted(missing)}"


def test_durations_are_positive_and_bounded() -> None:
    huge = {"host": {"interval": 1e300}, "storage": {"retention": "99999999999w"}}
    assert _problem_paths(huge) == {"host.interval", "storage.retention"}
    zero = {"host": {"interval": 0}, "alerting": {"group_wait": 0}}
    assert _problem_paths(zero) == {"host.interval"}  # group_wait 0 means "at once"
