"""Output for `infrawatch query`: an aligned table (with sparklines), one JSON array, or CSV."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from infrawatch.storage.points import SeriesPoints

Format = Literal["table", "json", "csv"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv")
SPARK_CHARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 40


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """Values as at most `width` block characters, lowest ▁ to highest █ (means when squeezed)."""
    if not values:
        return ""
    if len(values) > width:
        # Squeeze by averaging consecutive runs, so a spike still shows in its cell.
        cells = []
        for i in range(width):
            part = values[i * len(values) // width : (i + 1) * len(values) // width]
            cells.append(math.fsum(part) / len(part))
    else:
        cells = list(values)
    # NaN/±inf have no place on the scale: they are drawn as a gap and don't set lo/hi.
    finite = [v for v in cells if math.isfinite(v)]
    if not finite:
        return " " * len(cells)
    lo, hi = min(finite), max(finite)
    top = len(SPARK_CHARS) - 1

    def cell(v: float) -> str:
        if not math.isfinite(v):
            return " "
        if hi == lo:
            return SPARK_CHARS[len(SPARK_CHARS) // 2 - 1]  # flat: a middle bar
        return SPARK_CHARS[round((v - lo) / (hi - lo) * top)]

    return "".join(cell(v) for v in cells)


def write_json_array(rows: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    """One JSON array, one element per line (greppable, and streams well)."""
    out.write("[\n" if rows else "[")
    out.write(",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows))
    out.write("\n]\n" if rows else "]\n")


def rfc3339(ts: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC (`2026-01-02T15:04:05Z`, milliseconds when fractional)."""
    if ts is None:
        return None
    # strftime on gmtime is several times faster than datetime, and this runs once per row.
    whole = math.floor(ts)
    ms = round((ts - whole) * 1000)
    if ms == 1000:
        whole, ms = whole + 1, 0
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{base}Z" if ms == 0 else f"{base}.{ms:03d}Z"


def rfc3339_many(stamps: Sequence[float]) -> list[str]:
    """`rfc3339` of many epoch seconds; the date-to-minute part is formatted once per minute."""
    out = []
    minute = -1
    prefix = ""
    for ts in stamps:
        whole = math.floor(ts)
        ms = round((ts - whole) * 1000)
        if ms == 1000:
            whole, ms = whole + 1, 0
        if whole // 60 != minute:
            minute = whole // 60
            prefix = time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60))
        sec = whole - minute * 60
        out.append(f"{prefix}{sec:02d}Z" if ms == 0 else f"{prefix}{sec:02d}.{ms:03d}Z")
    return out


def _human_time(ts: float | None) -> str:
    text = rfc3339(ts)
    return "-" if text is None else text.replace("T", " ").removesuffix("Z")


def _labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _number(value: float) -> str:
    return f"{value:.6g}"


def render_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: Format,
    out: TextIO,
    *,
    time_columns: Sequence[str] = (),
) -> None:
    """Write `rows` (dicts keyed by `columns`); `time_columns` hold epoch seconds."""
    if fmt == "json":
        data = [
            {c: rfc3339(r[c]) if c in time_columns else _json_value(r[c]) for c in columns}
            for r in rows
        ]
        write_json_array(data, out)
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_csv_cell(r[c], c in time_columns) for c in columns])
        return
    cells = [[_table_cell(r[c], c in time_columns) for c in columns] for r in rows]
    _write_table(out, [c.upper() for c in columns], cells)


def _json_value(value: Any) -> Any:
    # json.dumps writes NaN/Infinity, which is not JSON (jq, browsers reject it): null instead.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_cell(value: Any, is_time: bool) -> Any:
    if is_time:
        return rfc3339(value) or ""
    if isinstance(value, Mapping):
        return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"))
    return "" if value is None else value


def printable(text: str) -> str:
    """`text` with control characters escaped (`\\n`, `\\x1b`) for a terminal table."""
    # Labels come from the host (any local user names a process): an escape sequence must not
    # reach the terminal raw, nor a newline break a row.
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _table_cell(value: Any, is_time: bool) -> str:
    if is_time:
        return _human_time(value)
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return printable(_labels_text(value))
    if isinstance(value, float):
        return _number(value)
    return printable(str(value))


def _write_table(out: TextIO, header: Sequence[str], cells: Sequence[Sequence[str]]) -> None:
    if not cells:
        out.write("(no rows)\n")
        return
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    numeric = [all(_is_number(row[i]) for row in cells) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip() + "\n"

    out.write(line(header))
    for row in cells:
        out.write(line(row))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == "-"
    return True


SAMPLE_COLUMNS = ("metric", "labels", "time", "ts", "value")


def _json_number(value: float) -> str:
    # repr of a finite float is valid JSON; SQLite can hold ±inf, which JSON cannot.
    return repr(value) if math.isfinite(value) else "null"


def render_samples(series: Sequence[SeriesPoints], fmt: Format, out: TextIO) -> None:
    """Write each series' points: one flat JSON array or CSV table, or per-series tables.

    Rows are formatted by hand (the series part encoded once) because a day of 1 s data is
    86,400 rows and json.dumps/csv per row would dominate the query's time.
    """
    if fmt == "json":
        lines: list[str] = []
        for s in series:
            head = json.dumps(
                {"metric": s.series.name, "labels": s.series.labels},
                ensure_ascii=False,
                separators=(",", ":"),
            )[:-1]
            times = rfc3339_many([ts for ts, _ in s.points])
            lines.extend(
                f'{head},"time":"{t}","ts":{ts!r},"value":{_json_number(v)}}}'
                for t, (ts, v) in zip(times, s.points, strict=True)
            )
        out.write("[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(SAMPLE_COLUMNS)
        for s in series:
            label_text = json.dumps(s.series.labels, ensure_ascii=False, separators=(",", ":"))
            head = _csv_line(s.series.name, label_text)
            times = rfc3339_many([ts for ts, _ in s.points])
            out.write(
                "".join(
                    f"{head},{t},{ts!r},{v!r}\n" for t, (ts, v) in zip(times, s.points, strict=True)
                )
            )
        return
    if not series:
        out.write("(no series)\n")
        return
    for index, s in enumerate(series):
        if index:
            out.write("\n")
        values = [v for _, v in s.points]
        name = printable(s.series.display())
        if not values:
            out.write(f"{name}  (no points in range)\n")
            continue
        count = f"{len(values)} point" + ("" if len(values) == 1 else "s")
        summary = (
            f"{count}  min {_number(min(values))}  max {_number(max(values))}"
            f"  last {_number(values[-1])}"
        )
        out.write(f"{name}  {sparkline(values)}  {summary}\n")
        shown = [_number(v) for v in values]
        times = [t.replace("T", " ")[:-1] for t in rfc3339_many([ts for ts, _ in s.points])]
        tw = max(len("TIME"), *(len(t) for t in times))
        vw = max(len("VALUE"), *(len(v) for v in shown))
        out.write(f"{'TIME':<{tw}}  {'VALUE':>{vw}}\n")
        out.write("".join(f"{t:<{tw}}  {v:>{vw}}\n" for t, v in zip(times, shown, strict=True)))


def _csv_line(*cells: str) -> str:
    """The CSV encoding of `cells` (quoted as needed), without a line end."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue()
