"""Command line: `infrawatch init | check | run | query | silence | alerts`.

Parses arguments and calls the package.

Heavy modules (asyncio agent, aiohttp, psutil, pydantic) are imported inside the commands, so
`--help` and `--version` start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from infrawatch import __version__

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILURE = 1


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _parse_override(text: str) -> tuple[list[str], str]:
    """`KEY=VALUE` split; the value is parsed with the configuration (config.override_value)."""
    key, sep, raw = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(part.strip() for part in path):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return [part.strip() for part in path], raw


def _overrides(pairs: Sequence[tuple[list[str], str]], args: argparse.Namespace) -> dict[str, Any]:
    from infrawatch.config import override_value

    out: dict[str, Any] = {}
    for path, raw in pairs:
        node = out
        for part in path[:-1]:
            # The later flag wins, as for a repeated key: `--set host=1 --set host.interval=2`.
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = override_value(path, raw)
    if getattr(args, "log_level", None):
        out.setdefault("logging", {})["level"] = args.log_level
    if getattr(args, "log_format", None):
        out.setdefault("logging", {})["format"] = args.log_format
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = _Parser(
        prog="infrawatch",
        description="A light monitoring agent: host and CloudWatch metrics, anomaly detection, "
        "deduplicated alerts.",
    )
    parser.add_argument("--version", action="version", version=f"infrawatch {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p_init = sub.add_parser("init", help="write the example configuration file")
    p_init.add_argument("--path", type=Path, help="where to write (default: platform config dir)")
    p_init.add_argument("--force", action="store_true", help="overwrite an existing file")

    def config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            "-c",
            help="TOML config file (default: $INFRAWATCH_CONFIG or the platform config dir)",
        )
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            type=_parse_override,
            metavar="KEY=VALUE",
            help="override one setting, e.g. host.interval=1",
        )
        p.add_argument("--log-level", choices=["debug", "info", "warning", "error", "critical"])
        p.add_argument("--log-format", choices=["auto", "json", "console"])

    p_check = sub.add_parser("check", help="validate the configuration and show the effective one")
    config_args(p_check)
    p_check.add_argument(
        "--send-test",
        action="store_true",
        help="send one test notification to each configured sink",
    )
    p_check.add_argument(
        "--scrape",
        action="store_true",
        help="scrape each [[scrape]] target once (exit 1 if one fails)",
    )

    p_run = sub.add_parser("run", help="run the agent")
    config_args(p_run)
    p_run.add_argument(
        "--once",
        action="store_true",
        help="run one cycle of every producer through the pipeline, then exit",
    )

    p_query = sub.add_parser(
        "query",
        help="read stored history (series, samples, anomalies, alerts)",
        description="Read the database the agent writes (read-only; works while it runs). "
        "Times are durations before now (30m, 7d) or RFC 3339 (2026-01-02T15:04:05Z).",
    )
    _query_args(p_query, config_args)
    from infrawatch.cli import alerts as alerts_cli
    from infrawatch.cli import silence as silence_cli

    silence_cli.add_parsers(sub, _Parser, config_args)
    alerts_cli.add_parser(sub, config_args)
    return parser


def _query_args(
    p_query: argparse.ArgumentParser, config_args: Callable[[argparse.ArgumentParser], None]
) -> None:
    """`query series|samples|anomalies|alerts` and their options."""
    what = p_query.add_subparsers(dest="what", required=True, metavar="WHAT", parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        config_args(p)
        p.add_argument(
            "--db", type=Path, help="database file (default: storage.path of the configuration)"
        )
        p.add_argument("--format", choices=["table", "json", "csv"], default="table")

    def label_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--label", action="append", metavar="KEY=VALUE", help="only series with this label"
        )

    def range_args(p: argparse.ArgumentParser, since: str) -> None:
        p.add_argument("--since", default=since, help=f"start of the range (default {since})")
        p.add_argument("--until", help="end of the range (default now)")

    p = what.add_parser("series", help="stored series with sample counts and first/last times")
    common(p)
    p.add_argument("--match", metavar="GLOB", help="metric name glob, e.g. 'system.cpu.*'")
    label_arg(p)

    p = what.add_parser("samples", help="values of one metric over time")
    common(p)
    p.add_argument("metric", help="metric name, e.g. system.cpu.utilization")
    label_arg(p)
    range_args(p, "1h")
    p.add_argument("--step", help="aggregate into buckets this wide (30s, 5m, 1h)")
    p.add_argument(
        "--agg",
        choices=["avg", "min", "max", "last", "count", "p95"],
        help="aggregation per step (default avg)",
    )

    p = what.add_parser("anomalies", help="anomaly state changes the detectors recorded")
    common(p)
    range_args(p, "24h")

    p = what.add_parser("alerts", help="alerts and their state")
    common(p)
    p.add_argument("--state", choices=["firing", "resolved"])


def cmd_init(args: argparse.Namespace) -> int:
    """Write the example config; refuse to overwrite without --force."""
    import platformdirs

    from infrawatch.config import APP_NAME, CONFIG_FILENAME, example_config_text

    path: Path = args.path or platformdirs.user_config_path(APP_NAME) / CONFIG_FILENAME
    if path.is_dir():
        path = path / CONFIG_FILENAME
    if path.exists() and not args.force:
        print(f"infrawatch init: {path} exists; use --force to overwrite", file=sys.stderr)
        return EXIT_USAGE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0600: the file is where webhook URLs and signing keys will be pasted.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(example_config_text())
        path.chmod(0o600)  # an existing file overwritten with --force keeps its old mode otherwise
    except OSError as exc:
        print(f"infrawatch init: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {path}")
    return EXIT_OK


def _load(args: argparse.Namespace) -> Any:
    from infrawatch.config import ConfigError, load

    try:
        return load(args.config, _overrides(args.overrides, args))
    except ConfigError as exc:  # every config problem, whatever its source: one line each
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the configuration; print each effective value and where it came from."""
    from infrawatch.config import duration_paths, effective_items
    from infrawatch.units import format_duration

    loaded = _load(args)
    if loaded is None:
        return EXIT_USAGE
    source = str(loaded.path) if loaded.path else "none (embedded defaults)"
    print(f"config file: {source}")
    rows = list(effective_items(loaded))
    width = max(len(path) for path, _, _ in rows)
    durations = duration_paths(loaded.settings)
    for path, value, origin in rows:
        shown = _show(value)
        if path in durations and isinstance(value, int | float):
            shown = f"{shown} ({format_duration(value)})"
        print(f"{path:<{width}}  {shown}  [{origin}]")
    print("configuration is valid")
    from infrawatch.detect import compiled

    print("detectors: compiled (mypyc)" if compiled() else "detectors: pure Python (see setup.py)")
    from infrawatch.web.security import check_lines

    # How the HTTP server is exposed: beyond loopback, with or without auth and TLS.
    for line in check_lines(loaded.settings.http):
        print(line)
    from infrawatch.export.config import check_lines as export_lines

    # Where samples are pushed; header values (tokens) masked.
    for line in export_lines(loaded.settings.export):
        print(line)
    from infrawatch.alerting.check import report as alerting_report

    if not alerting_report(loaded.settings.alerting, send_test=args.send_test):
        return 1  # a sink did not accept the test notification
    from infrawatch.collectors.scrape_check import report as scrape_report

    if not scrape_report(loaded.settings.scrape, try_each=args.scrape):
        return EXIT_FAILURE  # a target did not answer with a metrics body it could parse
    if loaded.settings.cloud.aws.enabled:
        # Imports aiobotocore only when the cloud producer is on; exit 2 if AWS is unusable.
        from infrawatch.collectors.aws_check import print_report

        if not print_report(loaded.settings.cloud.aws):
            return EXIT_USAGE
    return EXIT_OK


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent (or one cycle with --once)."""
    loaded = _load(args)
    if loaded is None:
        return EXIT_USAGE
    settings = loaded.settings
    from infrawatch import logging as iw_logging

    iw_logging.configure(settings.logging.level, settings.logging.format)
    from infrawatch.errors import StartupError
    from infrawatch.runtime.agent import run
    from infrawatch.storage.lock import DatabaseInUse, agent_lock
    from infrawatch.storage.store import StoreError

    log = iw_logging.get_logger("infrawatch.cli.main")
    try:
        # One serving agent per database; `--once` (one cycle) may run beside it, as before.
        with contextlib.nullcontext() if args.once else agent_lock(settings.storage.path):
            return run(
                settings, once=args.once, config_path=loaded.path, overrides=loaded.overrides
            )
    except DatabaseInUse as exc:
        log.error("agent.database_in_use", error=str(exc))
        return EXIT_USAGE
    except StoreError as exc:
        log.error("agent.store_unusable", error=str(exc))
        return EXIT_USAGE
    except StartupError as exc:
        log.error("agent.start_failed", error=str(exc))
        return EXIT_FAILURE


def cmd_query(args: argparse.Namespace) -> int:
    """Read stored history; a bad argument or unusable database is one line and exit 2."""
    from infrawatch.cli.query import run_command
    from infrawatch.storage.read import QueryError

    path: Path | None = args.db
    if path is None:
        loaded = _load(args)
        if loaded is None:
            return EXIT_USAGE
        path = loaded.settings.storage.path
    try:
        run_command(args, path, sys.stdout)
    except QueryError as exc:
        print(f"infrawatch query: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        # Point stdout at /dev/null so the interpreter's final flush doesn't fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return EXIT_OK


def cmd_silence(args: argparse.Namespace) -> int:
    """Add, list or expire silences; bad input is one line and exit 2, nothing written."""
    from infrawatch.cli.silence import run as run_silence

    loaded = _load(args)
    if loaded is None:
        return EXIT_USAGE
    return run_silence(args, loaded.settings, sys.stdout, sys.stderr)


def cmd_alerts(args: argparse.Namespace) -> int:
    """The on-call view: firing alerts, their silences and last notifications (read-only)."""
    from infrawatch.cli.alerts import run as run_alerts
    from infrawatch.storage.read import QueryError

    loaded = _load(args)
    if loaded is None:
        return EXIT_USAGE
    try:
        run_alerts(args, loaded.settings, sys.stdout)
    except QueryError as exc:
        print(f"infrawatch alerts: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


COMMANDS = {
    "init": cmd_init,
    "check": cmd_check,
    "run": cmd_run,
    "query": cmd_query,
    "silence": cmd_silence,
    "alerts": cmd_alerts,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `infrawatch` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `infrawatch check | head`: the reader has what it wanted
        # Point stdout at /dev/null so the interpreter's final flush doesn't fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
