"""Configuration: one pydantic-settings model fed by flags, env, a TOML file and defaults.

Precedence, highest first: command-line overrides > environment (`INFRAWATCH_HOST__INTERVAL`) >
TOML file (`--config`, `INFRAWATCH_CONFIG`, or the platform config dir) > embedded defaults.

Every problem, from whichever source, becomes one line of a ConfigError (the CLI exits 2 on it,
a SIGHUP reload rejects the file): values of the wrong TOML type, non-finite numbers, malformed
JSON in a variable, and values nested too deeply for the parsers alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from infrawatch.alerting.config import AlertingConfig
from infrawatch.collectors.aws_config import CloudConfig
from infrawatch.collectors.scrape_config import ScrapeTargets, TextfileConfig
from infrawatch.detect.config import AnalysisConfig
from infrawatch.export.config import ExportTargets
from infrawatch.units import ConfigModel, FsPath, Seconds, is_duration

APP_NAME = "infrawatch"
ENV_PREFIX = "INFRAWATCH_"
CONFIG_ENV = "INFRAWATCH_CONFIG"
CONFIG_FILENAME = "infrawatch.toml"
SYSTEM_CONFIG = Path("/etc/infrawatch") / CONFIG_FILENAME

HostMetricGroup = Literal[
    "cpu", "load", "memory", "swap", "filesystem", "disk", "network", "processes", "container"
]
HOST_METRIC_GROUPS: tuple[HostMetricGroup, ...] = (
    "cpu",
    "load",
    "memory",
    "swap",
    "filesystem",
    "disk",
    "network",
    "processes",
    "container",
)


class AgentConfig(ConfigModel):
    """`[agent]`: queue and lifecycle."""

    queue_size: int = Field(1000, gt=0, description="batches the producer queue holds")
    queue_full_policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    shutdown_deadline: Seconds = 10.0
    max_batch_samples: int = Field(10_000, gt=0)


class LoggingConfig(ConfigModel):
    """`[logging]`: level and renderer."""

    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def default_state_dir() -> Path:
    """Where the database lives by default: systemd's StateDirectory, else the platform dir."""
    systemd_state = os.environ.get("STATE_DIRECTORY")
    if systemd_state:
        return Path(systemd_state.split(":")[0])
    return platformdirs.user_state_path(APP_NAME)


class StorageConfig(ConfigModel):
    """`[storage]`: the SQLite database and how long it keeps what."""

    path: FsPath = Field(default_factory=lambda: default_state_dir() / "infrawatch.db")
    retention: Seconds = 7 * 86400.0
    rollup_1m_retention: Seconds = 30 * 86400.0
    rollup_1h_retention: Seconds = 400 * 86400.0
    buffer_max_samples: int = Field(200_000, gt=0)
    maintenance_interval: Seconds = 60.0


class HostConfig(ConfigModel):
    """`[host]`: the psutil producer."""

    enabled: bool = True
    interval: Seconds = 10.0
    metrics: list[HostMetricGroup] = Field(default_factory=lambda: list(HOST_METRIC_GROUPS))
    per_cpu: bool = True
    top_processes: int = Field(5, ge=0)
    process_interval: Seconds = 30.0
    procfs_path: FsPath = Path("/proc")
    rootfs_path: FsPath = Path("/")
    cgroup_path: FsPath = Path("/sys/fs/cgroup")
    container: Literal["auto", "on", "off"] = "auto"
    exclude_fs_types: list[str] = Field(
        default_factory=lambda: [
            "tmpfs",
            "devtmpfs",
            "overlay",
            "squashfs",
            "proc",
            "sysfs",
            "cgroup",
            "cgroup2",
            "devpts",
            "mqueue",
            "nsfs",
            "autofs",
            "tracefs",
            "debugfs",
            "securityfs",
            "fusectl",
            "configfs",
            "pstore",
            "bpf",
            "binfmt_misc",
            "ramfs",
            "hugetlbfs",
            "rpc_pipefs",
            "iso9660",
        ]
    )
    exclude_devices: list[str] = Field(
        default_factory=lambda: ["loop*", "ram*", "zram*", "dm-*", "sr*", "fd*", "nbd*"]
    )
    exclude_interfaces: list[str] = Field(
        default_factory=lambda: ["lo", "veth*", "docker*", "br-*", "virbr*", "cni*", "flannel*"]
    )


class HttpConfig(ConfigModel):
    """`[http]`: the server of /metrics, /healthz, /readyz, the status page and /api/v1."""

    enabled: bool = True
    listen: str = "127.0.0.1:9464"
    # Per-series detector state on /metrics: every series, only anomalous ones, or none.
    detector_states: Literal["all", "anomalous", "off"] = "all"
    # Safe by default (infrawatch.web.security): user → bcrypt hash, as in Prometheus' web
    # config file; a listen address beyond loopback needs these or allow_unauthenticated.
    basic_auth_users: dict[str, SecretStr] = Field(default_factory=dict)
    allow_unauthenticated: bool = False
    tls_cert_file: FsPath | None = None
    tls_key_file: FsPath | None = None

    @model_validator(mode="after")
    def _safe(self) -> HttpConfig:
        from infrawatch.web.security import config_problems

        problems = config_problems(self)
        if problems:
            # Raised as a ValidationError so each line names its own setting (http.listen, …).
            raise ValidationError.from_exception_data(
                "HttpConfig",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", message),
                        loc=loc,
                        input=None,  # hashes are secrets: never carried in the error
                    )
                    for loc, message in problems
                ],
            )
        return self

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected host:port, e.g. 127.0.0.1:9464 or [::1]:9464")
        return value

    @property
    def host(self) -> str:
        """The address to bind, brackets removed from IPv6."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The TCP port to bind."""
        return int(self.listen.rpartition(":")[2])


class Settings(BaseSettings):
    """The whole agent configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
        # As in every section (units.ConfigModel). With strict on, pydantic-settings parses
        # environment text ("50", "true") into the field's type before validating it.
        strict=True,
        allow_inf_nan=False,
    )

    agent: AgentConfig = AgentConfig()
    logging: LoggingConfig = LoggingConfig()
    storage: StorageConfig = Field(default_factory=StorageConfig)
    host: HostConfig = HostConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    alerting: AlertingConfig = AlertingConfig()
    cloud: CloudConfig = CloudConfig()
    http: HttpConfig = HttpConfig()
    scrape: ScrapeTargets = Field(default_factory=list)
    textfile: TextfileConfig = TextfileConfig()
    export: ExportTargets = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init kwargs) over environment over the TOML file; no dotenv or secrets dir."""
        file_source = InitSettingsSource(settings_cls, init_kwargs=_FILE_DATA.get())
        return (init_settings, env_settings, file_source)


# The parsed TOML for the Settings being built; a context variable keeps `load` re-entrant.
_FILE_DATA: ContextVar[dict[str, Any]] = ContextVar("_FILE_DATA", default={})  # noqa: B039 - never mutated


class ConfigError(Exception):
    """The configuration is invalid; `problems` has one line per error, each naming its path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated configuration and where it came from."""

    settings: Settings
    path: Path | None
    file_data: dict[str, Any]
    overrides: dict[str, Any]


def default_config_path() -> Path | None:
    """The config file used when none is named: the user's, else the system's, else none."""
    for candidate in (platformdirs.user_config_path(APP_NAME) / CONFIG_FILENAME, SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def resolve_config_path(explicit: str | Path | None) -> Path | None:
    """Pick the config file: `--config`, then `INFRAWATCH_CONFIG`, then the platform default."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return default_config_path()


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; raise ConfigError with a one-line reason if it can't be read."""
    try:
        text = path.read_bytes().decode()
        return tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such config file"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a config file"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: permission denied"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    except RecursionError:
        # tomllib recurses once per level of nesting and gives up at Python's recursion limit.
        site = _deepest_value(text)
        raise ConfigError([f"{path}: invalid TOML: {site}: values nested too deeply"]) from None


def _deepest_value(text: str) -> str:
    """Where the most deeply nested array or inline table of a TOML text is: "table.key (line N)".

    A scan, not a parse: strings and comments are skipped, brackets counted. It serves the
    error message for a file the parser could not handle, so approximate is good enough.
    """
    table = key = deepest = ""
    depth = most = 0
    line = key_line = 1
    line_start = i = 0
    while i < len(text):
        char = text[i]
        if char == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if char in "\"'":
            quote = char * 3 if text.startswith(char * 3, i) else char
            end = i + len(quote)
            while end < len(text) and not text.startswith(quote, end):
                end += 2 if char == '"' and text[end] == "\\" else 1
            line += text.count("\n", i, end)
            line_start = max(line_start, text.rfind("\n", i, end) + 1)
            i = end + len(quote)
            continue
        if char == "\n":
            line += 1
            line_start = i + 1
        elif depth == 0 and char == "[" and not text[line_start:i].strip():
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            table = text[i:end].partition("#")[0].strip().strip("[]").strip()
            i = end
            continue
        elif depth == 0 and char == "=":
            key, key_line = text[line_start:i].strip(), line
        elif char in "[{":
            depth += 1
            if depth > most:
                most = depth
                deepest = f"{f'{table}.' if table else ''}{key} (line {key_line})"
        elif char in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest or "a value"


def format_location(loc: tuple[int | str, ...]) -> str:
    """Turn a pydantic error location into a TOML path: ("a", "b", 1, "c") → "a.b[1].c"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def env_variables() -> dict[tuple[str, ...], str]:
    """`INFRAWATCH_*` variables by the config path they set (lower-cased, split on `__`)."""
    found = {}
    for name in os.environ:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper != CONFIG_ENV:
            found[tuple(name[len(ENV_PREFIX) :].lower().split("__"))] = name
    return found


def _touches(data: Mapping[str, Any], path: Sequence[int | str]) -> bool:
    """Whether `data` sets the value at `path`: there, at an enclosing key, or inside it."""
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping):
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def _overlaps(a: Sequence[int | str], b: Sequence[int | str]) -> bool:
    n = min(len(a), len(b))
    return tuple(a[:n]) == tuple(b[:n])


def _source(
    loc: Sequence[int | str],
    overrides: Mapping[str, Any],
    env: Mapping[tuple[str, ...], str],
    file_data: Mapping[str, Any],
) -> tuple[str, list[str]]:
    """Where the value at `loc` comes from: (flag|env|file|default, the variables' names)."""
    if not loc:
        return "default", []  # the whole configuration: no one source to name
    # Flags and the file are nested tables: a leaf came from them only if its own key is there
    # (a `[host]` table with one key does not set the section's other keys).
    if _touches(overrides, loc):
        return "flag", []
    # An env variable may name a whole section as JSON (INFRAWATCH_HOST='{…}') or a key inside
    # a dict-valued leaf (INFRAWATCH_X__MAP__KEY): both count for this leaf.
    names = sorted(name for path, name in env.items() if _overlaps(path, loc))
    if names:
        return "env", names
    if _touches(file_data, loc):
        return "file", []
    return "default", []


def _problems(
    exc: ValidationError,
    overrides: Mapping[str, Any],
    env: Mapping[tuple[str, ...], str],
    file_data: Mapping[str, Any],
) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        # Drop validator-chain names pydantic puts in locations ("function-after[...]").
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        # The file is the usual source and needs no label; a flag or a variable does, or the
        # reader looks for the value in the file. Inputs are left out: they may be secrets.
        origin, names = _source(loc, overrides, env, file_data)
        label = {"flag": " (from --set)", "env": f" (from {', '.join(names)})"}.get(origin, "")
        lines.append(f"{format_location(loc)}{label}: {message}")
    return lines


def _unwrap(annotation: Any) -> Any:
    """`annotation` without `Annotated[…]` metadata and without `| None`."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _annotations_along(path: Sequence[str]) -> list[Any]:
    """The annotation of each setting `path` leads through, as far as it names settings."""
    found: list[Any] = []
    annotation: Any = Settings
    for key in path:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = annotation.model_fields.items()
            match = [f for n, f in fields if key.lower() in (n.lower(), (f.alias or n).lower())]
            if not match:
                break
            annotation = match[0].annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            break
        found.append(annotation)
    return found


def _is_text(annotation: Any) -> bool:
    """Whether a setting of this annotation is written as a TOML string (a name, a path …)."""
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) is Literal:
        return all(isinstance(v, str) for v in typing.get_args(annotation))
    return annotation in (str, Path, SecretStr)


def _is_json(annotation: Any) -> bool:
    """Whether pydantic-settings reads a variable for this setting as JSON (and fails if not)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return False  # a union may also be plain text: pydantic-settings tolerates bad JSON
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return typing.get_origin(annotation) in (list, dict, set, frozenset, tuple)


def _env_problems(env: Mapping[tuple[str, ...], str]) -> list[str]:
    """One line per variable whose value should be JSON and is not (never quoting the value)."""
    problems = []
    for path, name in sorted(env.items()):
        along = _annotations_along(path)
        if len(along) != len(path):
            continue  # not a setting: validation reports it, or pydantic-settings ignores it
        if len(along) > 1 and typing.get_origin(_unwrap(along[-2])) is dict:
            continue  # an entry of a table setting: text is tolerated, validation judges it
        if not _is_json(along[-1]):
            continue
        where = ".".join(path)
        try:
            json.loads(os.environ[name])
        except json.JSONDecodeError as exc:
            problems.append(f"{name}: invalid JSON for {where}: {exc}")
        except RecursionError:
            problems.append(f"{name}: invalid JSON for {where}: nested too deeply")
    return problems


def override_value(path: Sequence[str], text: str) -> Any:
    """The value of `--set PATH=TEXT`: a TOML literal, else the text itself.

    Text is taken as typed where the setting is text (`--set storage.path=2024` is a path, not
    a number), and parsed as an environment variable's would be where the setting is a
    boolean or a number and the text is no TOML literal (`--set host.enabled=yes`).
    """
    along = _annotations_along(path)
    setting = _unwrap(along[-1]) if len(along) == len(path) else None
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        parsed = {}
    except RecursionError:
        raise ConfigError([f"{'.'.join(path)} (from --set): value nested too deeply"]) from None
    if list(parsed) != ["v"]:  # no literal, or not one ("1\nx = 2")
        if setting in (bool, int, float):
            with contextlib.suppress(ValidationError):
                return TypeAdapter(setting).validate_python(text)
        return text
    value = parsed["v"]
    if _is_text(setting) and not isinstance(value, str | list | dict):
        return text
    return value


def load(
    config_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> LoadedConfig:
    """Build the effective configuration; raise ConfigError listing every problem."""
    path = resolve_config_path(config_path)
    file_data = read_toml(path) if path is not None else {}
    flags = dict(overrides or {})
    env = env_variables()
    problems = _env_problems(env)
    if problems:
        raise ConfigError(problems)
    token = _FILE_DATA.set(file_data)
    try:
        settings = Settings(**flags)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, flags, env, file_data)) from None
    except SettingsError as exc:
        # _env_problems catches what pydantic-settings rejects; this is the backstop.
        raise ConfigError([f"environment: {exc}"]) from None
    except RecursionError:
        raise ConfigError(["configuration: a value is nested too deeply"]) from None
    finally:
        _FILE_DATA.reset(token)
    return LoadedConfig(settings, path, file_data, flags)


def masked_value(value: Any) -> Any:
    """`value` as plain data (models by TOML key, paths as text) with every secret masked."""
    if isinstance(value, SecretStr):
        return "**********" if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        # Keys as written in TOML: a field named `for_` is configured as `for`.
        return {
            (field.alias or name): masked_value(getattr(value, name))
            for name, field in type(value).model_fields.items()
        }
    if isinstance(value, list | tuple):
        return [masked_value(v) for v in value]
    if isinstance(value, dict):
        return {k: masked_value(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def effective_items(loaded: LoadedConfig) -> Iterator[tuple[str, Any, str]]:
    """Yield (toml path, masked value, origin) for every leaf; origin is flag|env|file|default."""
    env = env_variables()

    def walk(model: BaseModel, prefix: tuple[str, ...]) -> Iterator[tuple[str, Any, str]]:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            path = (*prefix, field.alias or name)
            if isinstance(value, BaseModel):
                yield from walk(value, path)
            else:
                origin, _ = _source(path, loaded.overrides, env, loaded.file_data)
                yield ".".join(path), masked_value(value), origin

    yield from walk(loaded.settings, ())


def duration_paths(model: BaseModel, prefix: str = "") -> set[str]:
    """The TOML paths of every duration setting (`Seconds`), for showing them as "7d"."""
    paths: set[str] = set()
    for name, field in type(model).model_fields.items():
        key = f"{prefix}{field.alias or name}"
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            paths |= duration_paths(value, f"{key}.")
        elif is_duration(field.metadata):
            paths.add(key)
    return paths


def example_config_text() -> str:
    """The documented example configuration that `init` writes."""
    from importlib.resources import files

    return files("infrawatch").joinpath("example.toml").read_text(encoding="utf-8")
