"""`infrawatch silence add|list|expire`: runtime silences in the agent's database.

Every argument is checked before the database is touched, so bad input (exit 2, one line)
writes nothing. The commands write only the `silences` table; the running agent notices the
commit within about a second (`PRAGMA data_version`, polled by the alert service).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import sqlite3

    from infrawatch.alerting.silences import SilenceRecord
    from infrawatch.config import Settings

DEFAULT_FOR = "1h"  # as amtool's --duration
LIST_COLUMNS = ("id", "origin", "state", "created_by", "comment", "starts_at", "ends_at",
                "matchers")  # fmt: skip
_STATE_ORDER = {"active": 0, "pending": 1, "expired": 2}


def add_parsers(
    sub: Any,
    parser_class: type[argparse.ArgumentParser],
    config_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    """The `silence` command and its `add`, `list` and `expire` subcommands."""
    p_silence = sub.add_parser(
        "silence",
        help="add, list or expire silences (mute matching alerts for a while)",
        description="Silences live in the agent's database; the running agent applies a change "
        'within a couple of seconds. Matchers use Alertmanager\'s syntax: name="v", name!="v", '
        'name=~"re", name!~"re".',
    )
    what = p_silence.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=parser_class
    )

    def common(p: argparse.ArgumentParser) -> None:
        config_args(p)
        p.add_argument(
            "--db", type=Path, help="database file (default: storage.path of the configuration)"
        )

    p = what.add_parser("add", help="mute alerts matching every matcher")
    common(p)
    p.add_argument("matchers", nargs="*", metavar="MATCHER", help="e.g. 'alertname=\"cpu_high\"'")
    p.add_argument(
        "--for", dest="duration", help=f"how long from the start (default {DEFAULT_FOR})"
    )
    p.add_argument("--until", help="end: RFC 3339 (2026-01-02T15:04:05Z) or a duration from now")
    p.add_argument("--start", help="start (default now): RFC 3339 or a duration from now")
    p.add_argument("--tz", help="IANA time zone for --start/--until given without an offset")
    p.add_argument("--comment", default="", help="why (shown by `silence list` and the page)")
    p.add_argument("--author", help="who (default: the current user)")
    p.add_argument("--force", action="store_true", help="allow a silence that matches every alert")

    p = what.add_parser("list", help="silences from the database (active and expired) and config")
    common(p)
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = what.add_parser("expire", help="end a silence now")
    common(p)
    p.add_argument("id", help="the silence's id (or a unique prefix of 8 or more characters)")


def run(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    """Run `infrawatch silence ACTION`; bad input is one line on `err` and exit code 2."""
    from infrawatch.alerting.silences import SilenceError
    from infrawatch.storage.read import QueryError

    path: Path = args.db or settings.storage.path
    try:
        if args.action == "add":
            return _add(args, path, out, err)
        if args.action == "expire":
            return _expire(args, path, out)
        return _list(args, settings, path, out)
    except (SilenceError, QueryError) as exc:
        err.write(f"infrawatch silence: {exc}\n")
        return 2


def _author(given: str | None) -> str:
    if given is not None:
        return given
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"


def _add(args: argparse.Namespace, path: Path, out: TextIO, err: TextIO) -> int:
    import time

    from infrawatch.alerting import silences as sil

    now = time.time()
    matchers = sil.parse_matchers(args.matchers)
    if not args.force and sil.matches_everything(matchers):
        what = "no matchers" if not matchers else f"{' '.join(args.matchers)} matches every alert"
        raise sil.SilenceError(f"{what}: this would mute every alert; add --force if you mean it")
    tz = sil.zone(args.tz)
    start = now if args.start is None else sil.point_in_time(
        args.start, now=now, tz=tz, option="--start"
    )  # fmt: skip
    if args.duration is not None and args.until is not None:
        raise sil.SilenceError("give --for or --until, not both")
    if args.until is not None:
        end = sil.point_in_time(args.until, now=now, tz=tz, option="--until")
    else:
        end = start + sil.duration(args.duration or DEFAULT_FOR, "--for")
    if end <= start:
        raise sil.SilenceError(f"the end ({_when(end)}) is not after the start ({_when(start)})")
    if end <= now:
        raise sil.SilenceError(f"the end ({_when(end)}) is already past")
    author = _author(args.author)
    conn = _open_for_write(path, err)
    try:
        silence_id = sil.insert(
            conn, args.matchers, starts_at=start, ends_at=end, created_by=author,
            comment=args.comment, now=now,
        )  # fmt: skip
    except _sqlite_errors() as exc:
        raise sil.SilenceError(f"{path}: {exc}") from None
    finally:
        conn.close()
    out.write(f"{silence_id}\n")
    return 0


def _expire(args: argparse.Namespace, path: Path, out: TextIO) -> int:
    import time

    from infrawatch.alerting import silences as sil

    if args.id.startswith("config-"):
        raise sil.SilenceError(
            f"{args.id}: silences from the config file are read-only; edit the file"
        )
    if not path.exists():
        raise sil.SilenceError(f"no silence with id {args.id!r} ({path}: no such database file)")
    conn = _open_for_write(path, sys.stderr)
    try:
        record, was_active = sil.expire(conn, args.id, now=time.time())
    except _sqlite_errors() as exc:
        raise sil.SilenceError(f"{path}: {exc}") from None
    finally:
        conn.close()
    out.write(f"{record.id} {'expired' if was_active else 'had already expired'}\n")
    return 0


def _list(args: argparse.Namespace, settings: Settings, path: Path, out: TextIO) -> int:
    import time

    from infrawatch.cli import render

    now = time.time()
    records = all_silences(settings, path)
    records.sort(key=lambda r: (_STATE_ORDER[r.state(now)], -(r.ends_at or float("inf"))))
    rows = [r.as_row(now) for r in records]
    if args.format == "table":
        for row in rows:
            row["matchers"] = " ".join(row["matchers"])
    render.render_rows(rows, LIST_COLUMNS, args.format, out, time_columns=("starts_at", "ends_at"))
    return 0


def all_silences(settings: Settings, path: Path) -> list[SilenceRecord]:
    """Config silences, then stored ones (none when the database does not exist yet)."""
    from infrawatch.alerting.silences import config_silences, read_all
    from infrawatch.storage.read import QueryError, open_readonly

    records = config_silences(settings.alerting)
    if not path.exists():
        return records
    conn = open_readonly(path)
    try:
        records.extend(read_all(conn))
    except _sqlite_errors() as exc:
        raise QueryError(f"{path}: {exc}") from None
    finally:
        conn.close()
    return records


def _when(ts: float) -> str:
    from infrawatch.cli.render import rfc3339

    return rfc3339(round(ts)) or "-"


def _sqlite_errors() -> type[Exception]:
    import sqlite3

    return sqlite3.DatabaseError


def _open_for_write(path: Path, err: TextIO) -> sqlite3.Connection:
    """A connection for writing silences; creates or migrates the database with the agent's
    own schema code when it is missing or older (an agent started later takes it as is)."""
    import asyncio
    import sqlite3

    from infrawatch.alerting.silences import SilenceError
    from infrawatch.storage.read import open_readonly
    from infrawatch.storage.store import SCHEMA_VERSION, Store, StoreError

    created = not path.exists()
    if created:
        version = 0
    else:
        check = open_readonly(path)  # refuses a file that is not an infrawatch database
        try:
            version = int(check.execute("PRAGMA user_version").fetchone()[0])
        finally:
            check.close()
    if version < SCHEMA_VERSION:

        async def migrate() -> None:
            async with Store(path):
                pass

        try:
            asyncio.run(migrate())
        except (StoreError, OSError) as exc:
            raise SilenceError(f"{path}: {exc}") from None
        if created:
            err.write(f"infrawatch silence: created database {path} (no agent has used it yet)\n")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn
