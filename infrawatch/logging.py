"""structlog set-up: JSON lines on stdout (or a console renderer), stdlib loggers bridged in."""

from __future__ import annotations

import json
import logging
import math
import sys
from typing import Any, Literal

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


# Libraries whose debug/info output is per request or per statement (aiosqlite logs every SQL
# call; aiohttp.server logs the raw bytes of malformed requests): warnings and up only.
_QUIET_LOGGERS = (
    "aiohttp.access",
    "aiohttp.server",
    "aiosqlite",
    "botocore",
    "aiobotocore",
    "urllib3",
)


def _rename_logger(_: Any, __: str, event_dict: structlog.typing.EventDict) -> Any:
    # structlog names it "logger" already for bound loggers; stdlib records carry "logger" too.
    event_dict.setdefault("logger", "infrawatch")
    return event_dict


def _finite(value: Any) -> Any:
    """`value` with every non-finite float spelled as Prometheus spells it ("NaN", "+Inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_line(event_dict: Any, **kw: Any) -> str:
    """One JSON object per log line; a NaN or infinity in a field never makes it invalid JSON."""
    try:
        return json.dumps(event_dict, allow_nan=False, **kw)
    except ValueError:
        return json.dumps(_finite(event_dict), allow_nan=False, **kw)


def configure(
    level: str = "info", fmt: Literal["auto", "json", "console"] = "auto", stream: Any = None
) -> None:
    """Route structlog and stdlib logging to one renderer on `stream` (stdout by default)."""
    stream = stream if stream is not None else sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if use_console
        else structlog.processors.JSONRenderer(serializer=json_line)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _rename_logger,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # Third-party loggers speak through the same handler, but only about real problems.
    for noisy in _QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(max(_LEVELS[level], logging.WARNING))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named `name` (shown as the `logger` field)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def describe(exc: BaseException) -> str:
    """One line for a log field or a user: `TypeName: message` (the type alone if no message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def at_doubling(count: int) -> bool:
    """Whether the `count`-th occurrence should be logged: the 1st, 2nd, 4th, 8th …

    A repeating failure stays visible without flooding the log."""
    return count > 0 and count & (count - 1) == 0
