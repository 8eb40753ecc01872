"""`infrawatch query WHAT`: check the arguments, read through the storage read API, render."""

from __future__ import annotations

import sqlite3
from argparse import Namespace
from pathlib import Path
from typing import TextIO

from infrawatch.cli import render
from infrawatch.storage.points import samples
from infrawatch.storage.read import (
    QueryError,
    alerts,
    anomalies,
    list_series,
    open_readonly,
    parse_labels,
    parse_step,
    time_range,
)

SERIES_COLUMNS = ("metric", "labels", "samples", "first", "last")
ANOMALY_COLUMNS = ("ts", "metric", "labels", "detector", "rule", "severity", "status", "value",
                   "score", "summary")  # fmt: skip
ALERT_COLUMNS = ("alertname", "state", "severity", "labels", "starts_at", "ends_at",
                 "last_notified_at", "fingerprint", "annotations")  # fmt: skip


def run_command(args: Namespace, path: Path, out: TextIO, *, now: float | None = None) -> None:
    """Run `infrawatch query WHAT` (parsed `args`) against the database at `path`."""
    fmt: render.Format = args.format
    labels = parse_labels(getattr(args, "label", None) or [])
    # Arguments are checked before the database is touched.
    if args.what == "samples":
        since, until = time_range(args.since, args.until, now=now)
        step = None if args.step is None else parse_step(args.step)
        if step is None and args.agg is not None:
            raise QueryError("--agg needs --step (the bucket width to aggregate over)")
    elif args.what == "anomalies":
        since, until = time_range(args.since, args.until, now=now)
    conn = open_readonly(path)
    try:
        if args.what == "series":
            rows = list_series(conn, match=args.match, labels=labels)
            render.render_rows(rows, SERIES_COLUMNS, fmt, out, time_columns=("first", "last"))
        elif args.what == "samples":
            found = samples(
                conn, args.metric, labels=labels, since=since, until=until, step=step,
                agg=args.agg or "avg",
            )  # fmt: skip
            render.render_samples(found, fmt, out)
        elif args.what == "anomalies":
            rows = anomalies(conn, since=since, until=until)
            render.render_rows(rows, ANOMALY_COLUMNS, fmt, out, time_columns=("ts",))
        else:
            rows = alerts(conn, state=args.state)
            times = ("starts_at", "ends_at", "last_notified_at")
            render.render_rows(rows, ALERT_COLUMNS, fmt, out, time_columns=times)
    except sqlite3.DatabaseError as exc:  # locked, I/O error, or damaged pages ("malformed")
        raise QueryError(f"{path}: {exc}") from None
    finally:
        conn.close()
