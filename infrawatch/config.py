"""Configuration: one pydantic-settings model fed by flags, env, a TOML file and defaults.

Precedence, highest first: command-line overrides > environment (`INFRAWATCH_HOST__INTERVAL`) >
TOML file (`--config`, `INFRAWATCH_CONFIG`, or the platform config dir) > embedded defaults.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from infrawatch.alerting.config import AlertingConfig
from infrawatch.collectors.aws_config import CloudConfig
from infrawatch.detect.config import AnalysisConfig
from infrawatch.units import Seconds, is_duration

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class AgentConfig(_Section):
    """`[agent]`: queue and lifecycle."""

    queue_size: int = Field(1000, gt=0, description="batches the producer queue holds")
    queue_full_policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    shutdown_deadline: Seconds = 10.0
    max_batch_samples: int = Field(10_000, gt=0)


class LoggingConfig(_Section):
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


class StorageConfig(_Section):
    """`[storage]`: the SQLite database and how long it keeps what."""

    path: Path = Field(default_factory=lambda: default_state_dir() / "infrawatch.db")
    retention: Seconds = 7 * 86400.0
    rollup_1m_retention: Seconds = 30 * 86400.0
    rollup_1h_retention: Seconds = 400 * 86400.0
    buffer_max_samples: int = Field(200_000, gt=0)
    maintenance_interval: Seconds = 60.0


class HostConfig(_Section):
    """`[host]`: the psutil producer."""

    enabled: bool = True
    interval: Seconds = 10.0
    metrics: list[HostMetricGroup] = Field(default_factory=lambda: list(HOST_METRIC_GROUPS))
    per_cpu: bool = True
    top_processes: int = Field(5, ge=0)
    process_interval: Seconds = 30.0
    procfs_path: Path = Path("/proc")
    rootfs_path: Path = Path("/")
    cgroup_path: Path = Path("/sys/fs/cgroup")
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


class HttpConfig(_Section):
    """`[http]`: the /metrics, /healthz and /readyz server."""

    enabled: bool = True
    listen: str = "127.0.0.1:9464"
    # Per-series detector state on /metrics: every series, only anomalous ones, or none.
    detector_states: Literal["all", "anomalous", "off"] = "all"

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
    )

    agent: AgentConfig = AgentConfig()
    logging: LoggingConfig = LoggingConfig()
    storage: StorageConfig = Field(default_factory=StorageConfig)
    host: HostConfig = HostConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    alerting: AlertingConfig = AlertingConfig()
    cloud: CloudConfig = CloudConfig()
    http: HttpConfig = HttpConfig()

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
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such config file"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a config file"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: permission denied"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None


def format_location(loc: tuple[int | str, ...]) -> str:
    """Turn a pydantic error location into a TOML path: ("a", "b", 1, "c") → "a.b[1].c"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _problems(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        # Drop validator-chain names pydantic puts in locations ("function-after[...]").
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{format_location(loc)}: {message}")
    return lines


def load(
    config_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> LoadedConfig:
    """Build the effective configuration; raise ConfigError listing every problem."""
    path = resolve_config_path(config_path)
    file_data = read_toml(path) if path is not None else {}
    token = _FILE_DATA.set(file_data)
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None
    finally:
        _FILE_DATA.reset(token)
    return LoadedConfig(settings, path, file_data, dict(overrides or {}))


def env_paths() -> set[tuple[str, ...]]:
    """The config paths set through `INFRAWATCH_*` variables (lower-cased, split on `__`)."""
    paths = set()
    for name in os.environ:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper != CONFIG_ENV:
            paths.add(tuple(name[len(ENV_PREFIX) :].lower().split("__")))
    return paths


def _has_path(data: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


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
    from_env = env_paths()

    def origin(path: tuple[str, ...]) -> str:
        # Flags and the file are nested tables: a leaf came from them only if its own key is
        # there (a `[host]` table with one key does not set the section's other keys).
        if _has_path(loaded.overrides, path):
            return "flag"
        # An env variable may name a whole section as JSON (INFRAWATCH_HOST='{…}') or a key
        # inside a dict-valued leaf (INFRAWATCH_X__MAP__KEY): both count for this leaf.
        if any(p == path[: len(p)] or path == p[: len(path)] for p in from_env):
            return "env"
        if _has_path(loaded.file_data, path):
            return "file"
        return "default"

    def walk(model: BaseModel, prefix: tuple[str, ...]) -> Iterator[tuple[str, Any, str]]:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            path = (*prefix, field.alias or name)
            if isinstance(value, BaseModel):
                yield from walk(value, path)
            else:
                yield ".".join(path), masked_value(value), origin(path)

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


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data with every secret masked."""
    result: dict[str, Any] = masked_value(settings)
    return result


def example_config_text() -> str:
    """The documented example configuration that `init` writes."""
    from importlib.resources import files

    return files("infrawatch").joinpath("example.toml").read_text(encoding="utf-8")


def override_value(path: Any, text: str) -> Any:  # TEMP stub: the old _parse_override behaviour
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
