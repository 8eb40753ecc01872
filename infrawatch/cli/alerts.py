"""`infrawatch alerts`: the on-call view in a terminal, read-only.

What is firing now and since when, whether a silence mutes it (and which), and the last
notification each sink got about it (from the outbox rows). Reads the database through
`infrawatch.storage.read.open_readonly`, so it works while the agent runs and changes nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from infrawatch.config import Settings

COLUMNS = ("alertname", "severity", "since", "silenced_by", "flapping", "labels", "notified",
           "fingerprint")  # fmt: skip

# The newest outbox row per (alert, sink): SQLite returns the bare columns of the row that
# holds max(created_at).
_LAST_NOTIFIED = """
SELECT json_extract(a.value, '$.fingerprint'), o.sink, max(o.created_at), o.state, o.done_at,
       json_extract(a.value, '$.status')
FROM outbox AS o, json_each(o.payload, '$.alerts') AS a
GROUP BY 1, 2
"""


def add_parser(sub: Any, config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """The `alerts` command."""
    p = sub.add_parser(
        "alerts",
        help="what is firing now, silenced or not, and the last notification per sink",
        description="The on-call view: firing alerts, since when, the silence muting each (if "
        "any) and the last notification each sink got about it. Read-only.",
    )
    config_args(p)
    p.add_argument(
        "--db", type=Path, help="database file (default: storage.path of the configuration)"
    )
    p.add_argument("--format", choices=["table", "json"], default="table")


def run(
    args: argparse.Namespace, settings: Settings, out: TextIO, *, now: float | None = None
) -> None:
    """Print the firing alerts; QueryError for an unusable database."""
    import sqlite3

    from infrawatch.alerting.silences import config_silences, read_all, silenced_by
    from infrawatch.cli import render
    from infrawatch.storage.read import QueryError, alerts, has_table, open_readonly

    now = time.time() if now is None else now
    path: Path = args.db or settings.storage.path
    conn = open_readonly(path)
    try:
        firing = alerts(conn, state="firing")
        silences = config_silences(settings.alerting) + read_all(conn)
        notified: dict[str, dict[str, dict[str, Any]]] = {}
        if has_table(conn, "outbox"):
            for fp, sink, created, state, done, status in conn.execute(_LAST_NOTIFIED):
                notified.setdefault(fp, {})[sink] = {
                    "at": created, "state": state, "done_at": done, "status": status,
                }  # fmt: skip
    except sqlite3.DatabaseError as exc:
        raise QueryError(f"{path}: {exc}") from None
    finally:
        conn.close()
    firing.sort(key=lambda a: (-a["starts_at"], a["alertname"]))
    rows = []
    for alert in firing:
        sinks = notified.get(alert["fingerprint"], {})
        row = {
            "alertname": alert["alertname"],
            "severity": alert["severity"],
            "since": alert["starts_at"],
            "silenced_by": silenced_by(silences, alert["labels"], now),
            "flapping": alert["flapping"],
            "labels": alert["labels"],
            "fingerprint": alert["fingerprint"],
        }
        if args.format == "json":
            row["notified"] = {
                sink: {
                    "at": render.rfc3339(n["at"]),
                    "status": n["status"],
                    "delivery": n["state"],
                    "done_at": render.rfc3339(n["done_at"]),
                }
                for sink, n in sorted(sinks.items())
            }
        else:
            row["notified"] = (
                "; ".join(
                    f"{sink} {render.rfc3339(round(n['at']))} {n['status']} ({n['state']})"
                    for sink, n in sorted(sinks.items())
                )
                or "never"
            )
        rows.append(row)
    render.render_rows(rows, COLUMNS, args.format, out, time_columns=("since",))
