"""`infrawatch query` over a fixture database: formats, filters, aggregation, bad arguments."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from infrawatch.cli.main import main
from infrawatch.cli.render import SPARK_CHARS, sparkline
from infrawatch.model import Sample
from infrawatch.storage.points import samples
from infrawatch.storage.read import QueryError, open_readonly
from tests.support_history import CPU, EVIL, MEM, NOW, ODD, Fixture, brute_force, build, key

HOURS_3 = ["--since", "2027-01-15T05:00:00Z", "--until", "2027-01-15T08:00:00Z"]


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    path = tmp_path_factory.mktemp("history") / "fixture.db"
    return build(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["query", *args])
    out, err = capsys.readouterr()
    return code, out, err


def q(fx: Fixture, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    what, *rest = args
    return run(capsys, what, "--db", str(fx.path), *rest)


# -- series ----------------------------------------------------------------------------------


def test_series_json_lists_counts_and_times(fixture_db: Fixture, capsys) -> None:
    code, out, _ = q(fixture_db, capsys, "series", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["metric"], r["labels"]) for r in rows] == [
        (ODD, {"note": EVIL}),
        (CPU, {"cpu": "0", "host": "web-1"}),
        (CPU, {"cpu": "1", "host": "web-1"}),
        (MEM, {"host": "web-1"}),
    ]
    for r in rows:
        pts = fixture_db.points[key(r["metric"], **r["labels"])]
        assert r["samples"] == len(pts)
        assert r["first"] == _rfc(min(t for t, _ in pts))
        assert r["last"] == _rfc(max(t for t, _ in pts))


def _rfc(ts: float) -> str:
    from infrawatch.cli.render import rfc3339

    text = rfc3339(ts)
    assert text is not None
    return text


def test_series_match_glob_and_label_filter(fixture_db: Fixture, capsys) -> None:
    code, out, _ = q(fixture_db, capsys, "series", "--match", "system.*", "--format", "json")
    assert code == 0
    assert {r["metric"] for r in json.loads(out)} == {CPU, MEM}
    code, out, _ = q(
        fixture_db, capsys, "series", "--label", "host=web-1", "--label", "cpu=1",
        "--format", "json",
    )  # fmt: skip
    assert [r["labels"] for r in json.loads(out)] == [{"cpu": "1", "host": "web-1"}]


def test_label_values_are_parameters_not_sql(fixture_db: Fixture, capsys) -> None:
    code, out, _ = q(fixture_db, capsys, "series", "--label", f"note={EVIL}", "--format", "json")
    assert code == 0
    assert [r["metric"] for r in json.loads(out)] == [ODD]
    # The same text as a host value matches nothing: it is compared, not executed.
    code, out, _ = q(fixture_db, capsys, "series", "--label", f"host={EVIL}", "--format", "json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = q(fixture_db, capsys, "series", "--match", EVIL, "--format", "json")
    assert (code, json.loads(out)) == (0, [])


def test_series_table_is_aligned(fixture_db: Fixture, capsys) -> None:
    code, out, _ = q(fixture_db, capsys, "series")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["METRIC", "LABELS", "SAMPLES", "FIRST", "LAST"]
    # Every row's SAMPLES column ends at the same offset as the header's (right-aligned).
    end = lines[0].index("SAMPLES") + len("SAMPLES")
    assert all(line[end - 1].isdigit() and line[end] == " " for line in lines[1:])
    assert len(lines) == 5


def test_series_csv_has_header_and_rows(fixture_db: Fixture, capsys) -> None:
    code, out, _ = q(fixture_db, capsys, "series", "--format", "csv", "--match", "app.*")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0
    assert rows[0] == ["metric", "labels", "samples", "first", "last"]
    assert rows[1][:3] == [ODD, json.dumps({"note": EVIL}, separators=(",", ":")), "20"]


# -- samples ---------------------------------------------------------------------------------


def test_raw_samples_json_are_the_stored_points(fixture_db: Fixture, capsys) -> None:
    code, out, _ = q(
        fixture_db, capsys, "samples", CPU, "--label", "cpu=0", *HOURS_3, "--format", "json"
    )
    rows = json.loads(out)
    expected = fixture_db.values(key(CPU, cpu="0", host="web-1"), NOW - 3 * 3600, NOW)
    assert code == 0
    assert [(r["ts"], r["value"]) for r in rows] == expected
    assert rows[0]["time"] == _rfc(expected[0][0])


@pytest.mark.parametrize("agg", ["avg", "min", "max", "last", "count", "p95"])
@pytest.mark.parametrize("step", ["30s", "5m", "1h", "90s", "2h"])
def test_aggregation_matches_brute_force(fixture_db: Fixture, agg: str, step: str) -> None:
    """Raw-only steps (30s, 90s), rollup_1m (5m), rollup_1h (1h, 2h), p95 from raw: all exact,
    including the recent span the rollup job has not reached yet."""
    seconds = {"30s": 30, "5m": 300, "1h": 3600, "90s": 90, "2h": 7200}[step]
    conn = open_readonly(fixture_db.path)
    try:
        since, until = NOW - 26 * 3600 - 17, NOW
        found = samples(conn, MEM, since=since, until=until, step=seconds, agg=agg)  # type: ignore[arg-type]
        found += samples(conn, CPU, labels={"cpu": "0"}, since=since, until=until, step=seconds,
                         agg=agg)  # type: ignore[arg-type]  # fmt: skip
    finally:
        conn.close()
    assert [(got.series.name, got.series.labels) for got in found] == [
        (MEM, {"host": "web-1"}),
        (CPU, {"cpu": "0", "host": "web-1"}),
    ]
    for got in found:
        series = key(got.series.name, **got.series.labels)
        start = (since // seconds) * seconds
        raw = fixture_db.values(series, start, until)
        want = brute_force(raw, seconds, agg)
        assert want  # every series has points in the span: the comparison is not vacuous
        assert [t for t, _ in got.points] == [t for t, _ in want]
        assert [v for _, v in got.points] == pytest.approx([v for _, v in want], rel=1e-9)


def test_rollups_are_used_for_whole_steps(fixture_db: Fixture) -> None:
    """The 1h answer for old hours comes from rollup_1h: changing a rollup row changes it."""
    copy = fixture_db.path.with_name("tampered.db")
    copy.write_bytes(fixture_db.path.read_bytes())
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE rollup_1h SET max = 42 WHERE ts = ?", (NOW - 2 * 3600,))
    conn.close()
    conn = open_readonly(copy)
    try:
        [got] = samples(conn, MEM, since=NOW - 3 * 3600, until=NOW, step=3600, agg="max")
    finally:
        conn.close()
    assert dict(got.points)[NOW - 2 * 3600] == 42


def test_samples_table_has_sparkline_per_series(fixture_db: Fixture, capsys) -> None:
    code, out, _ = q(fixture_db, capsys, "samples", CPU, *HOURS_3, "--step", "10m")
    assert code == 0
    headers = [line for line in out.splitlines() if line.startswith(CPU)]
    assert len(headers) == 2
    for header in headers:
        spark = header.split()[1]
        assert len(spark) == 18
        assert set(spark) <= set(SPARK_CHARS)
        assert "18 points" in header


def test_samples_csv(fixture_db: Fixture, capsys) -> None:
    code, out, _ = q(
        fixture_db, capsys, "samples", ODD, *HOURS_3, "--format", "csv", "--step", "5m",
        "--agg", "count",
    )  # fmt: skip
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0
    assert rows[0] == ["metric", "labels", "time", "ts", "value"]
    want = brute_force(fixture_db.points[key(ODD, note=EVIL)], 300, "count")
    assert [(float(r[3]), float(r[4])) for r in rows[1:]] == want
    assert rows[1][1] == json.dumps({"note": EVIL}, separators=(",", ":"))


def test_empty_tables_print_empty_results(tmp_path: Path, capsys) -> None:
    import asyncio

    from infrawatch.storage.store import Store

    path = tmp_path / "empty.db"

    async def create() -> None:
        async with Store(path):
            pass

    asyncio.run(create())
    assert run(capsys, "anomalies", "--db", str(path), "--format", "json")[:2] == (0, "[]\n")
    assert run(capsys, "alerts", "--db", str(path), "--format", "json")[:2] == (0, "[]\n")
    assert run(capsys, "series", "--db", str(path))[:2] == (0, "(no rows)\n")
    assert run(capsys, "alerts", "--db", str(path), "--format", "csv")[1].startswith("alertname,")


def test_anomalies_and_alerts(fixture_db: Fixture, capsys) -> None:
    code, out, _ = q(
        fixture_db, capsys, "anomalies", "--since", "2027-01-15T07:00:00Z",
        "--until", "2027-01-15T08:00:00Z", "--format", "json",
    )  # fmt: skip
    rows = json.loads(out)
    assert code == 0
    assert [(r["status"], r["rule"], r["metric"]) for r in rows] == [
        ("firing", "cpu_high", CPU),
        ("resolved", "cpu_high", CPU),
    ]
    code, out, _ = q(fixture_db, capsys, "alerts", "--state", "firing", "--format", "json")
    assert [r["fingerprint"] for r in json.loads(out)] == ["fp-1"]
    code, out, _ = q(fixture_db, capsys, "alerts", "--format", "json")
    assert [r["fingerprint"] for r in json.loads(out)] == ["fp-1", "fp-2"]


# -- bad arguments and bad files -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["samples", "no.such.metric"], "unknown metric 'no.such.metric'"),
        (["samples", CPU, "--label", "cpu=9"], "no series of"),
        (["samples", CPU, "--since", "yesterday"], "--since: malformed time 'yesterday'"),
        (["samples", CPU, "--since", "1h", "--until", "2h"], "--until (2h) is not after"),
        (["samples", CPU, "--step", "5x"], "--step: malformed duration '5x'"),
        (["samples", CPU, "--step", "0.5"], "must be a whole number of seconds"),
        (["samples", CPU, "--agg", "max"], "--agg needs --step"),
        (["series", "--label", "novalue"], "--label: expected KEY=VALUE"),
        (["series", "--format", "yaml"], "invalid choice: 'yaml'"),
        (["samples", CPU, "--agg", "median", "--step", "1m"], "invalid choice: 'median'"),
        (["alerts", "--state", "pending"], "invalid choice: 'pending'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    fixture_db: Fixture, capsys, args: list[str], message: str
) -> None:
    what, *rest = args
    try:
        code, out, err = q(fixture_db, capsys, what, *rest)
    except SystemExit as exc:  # argparse's own errors exit from inside main()
        code = int(exc.code or 0)
        out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert message in err, err
    assert err.count("\n") == 1, err


def _snapshot(path: Path) -> tuple[bytes, int, float]:
    st = path.stat()
    return path.read_bytes(), st.st_mode, st.st_mtime


@pytest.mark.parametrize("content", [b"", b"this is not a database\n" * 100, b"\x00" * 4096])
def test_non_sqlite_file_is_reported_and_untouched(tmp_path: Path, capsys, content: bytes) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    before = _snapshot(path)
    code, out, err = run(capsys, "samples", CPU, "--db", str(path))
    assert code == 2
    assert out == ""
    assert str(path) in err
    assert err.count("\n") == 1
    assert _snapshot(path) == before
    assert sorted(os.listdir(tmp_path)) == ["notes.db"]  # no -wal/-shm/-journal left behind


def test_corrupt_database_is_one_line_exit_2(fixture_db: Fixture, tmp_path: Path, capsys) -> None:
    """A valid header over damaged pages (a bad disk, a half-copied file): no traceback."""
    path = tmp_path / "damaged.db"
    path.write_bytes(fixture_db.path.read_bytes())
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'samples'").fetchone()
    conn.close()
    with path.open("r+b") as f:  # the samples table's root page becomes junk
        f.seek((root[0] - 1) * page_size)
        f.write(b"\xa5" * page_size)
    code, out, err = run(capsys, "series", "--db", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"infrawatch query: {path}: ")
    assert "malformed" in err
    assert err.count("\n") == 1


def test_missing_database_is_reported_and_not_created(tmp_path: Path, capsys) -> None:
    path = tmp_path / "missing.db"
    code, _, err = run(capsys, "series", "--db", str(path))
    assert code == 2
    assert err == f"infrawatch query: {path}: no such database file\n"
    assert not path.exists()


def test_database_path_comes_from_config(fixture_db: Fixture, tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[storage]\npath = "{fixture_db.path}"\n')
    code, out, _ = run(capsys, "series", "--config", str(config), "--format", "json")
    assert code == 0
    assert len(json.loads(out)) == 4
    code, _, err = run(capsys, "series", "--config", str(config), "--set", "storage.path='/nope'")
    assert code == 2
    assert "/nope: no such database file" in err


def test_newer_schema_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE series (id); CREATE TABLE samples (x); PRAGMA user_version = 999;"
        )
    conn.close()
    code, _, err = run(capsys, "series", "--db", str(path))
    assert code == 2
    assert "schema version 999 is newer" in err


def test_open_readonly_refuses_foreign_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(QueryError, match="not an infrawatch database"):
        open_readonly(path)


def test_help_does_not_import_heavy_modules() -> None:
    import subprocess

    code = (
        "import sys\n"
        "from infrawatch.cli.main import build_parser\n"
        "build_parser()\n"
        "bad = {'aiosqlite', 'psutil', 'aiohttp', 'sqlite3'} & set(sys.modules)\n"
        "print(sorted(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- sparkline -------------------------------------------------------------------------------


def test_sparkline_maps_lowest_and_highest() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == SPARK_CHARS
    assert sparkline([5, 5, 5]) == "▄▄▄"
    assert sparkline([]) == ""


def test_sparkline_squeezes_long_series_keeping_a_spike() -> None:
    values = [0.0] * 400
    values[250] = 100.0
    line = sparkline(values, width=40)
    assert len(line) == 40
    assert line[25] == "█"
    assert line.count("▁") == 39


def test_batch_time_formatting_matches_single() -> None:
    from infrawatch.cli.render import rfc3339, rfc3339_many

    stamps = [NOW + i * 0.7 for i in range(500)] + [NOW - 0.0004, NOW + 59.9996, 1.5]
    assert rfc3339_many(stamps) == [rfc3339(t) for t in stamps]
    assert rfc3339(NOW) == "2027-01-15T08:00:00Z"
    assert rfc3339(NOW + 0.25) == "2027-01-15T08:00:00.250Z"


def test_sparkline_survives_non_finite_values() -> None:
    """±inf and NaN (a database written by other tools) don't crash the table; finite values
    keep their scale and the others are drawn as a gap."""
    line = sparkline([0.0, float("inf"), 7.0, float("nan"), float("-inf")])
    assert line == "▁ █  "
    assert sparkline([float("nan")] * 3) == "   "


def _store_with_raw_rows(path: Path, rows: list[tuple[float, float]]) -> None:
    import asyncio

    from infrawatch.storage.store import Store

    async def create() -> None:
        async with Store(path) as store:
            await store.write([Sample("m", 0.0, NOW - 3600)])

    asyncio.run(create())
    # Written around the store (another tool, an older agent): the store itself skips these.
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO samples VALUES (1, ?, ?)", rows)
        conn.execute(
            "INSERT INTO anomalies (series_id, ts, detector, rule, severity, status, value,"
            " score, evidence, summary) VALUES (1, ?, 't', 'r', 'warning', 'firing', ?, 1, '{}',"
            " 'inf')",
            (NOW - 10, float("inf")),
        )
    conn.close()


def test_non_finite_values_in_the_database_are_shown_not_a_traceback(
    tmp_path: Path, capsys
) -> None:
    path = tmp_path / "inf.db"
    _store_with_raw_rows(path, [(NOW - 100, float("inf")), (NOW - 99, float("-inf")),
                                (NOW - 98, 1.0)])  # fmt: skip
    span = ["--db", str(path), "--since", "2027-01-15T07:00:00Z", "--until", "2027-01-15T08:00:00Z"]
    code, out, _ = run(capsys, "samples", "m", *span)
    assert code == 0
    assert "4 points" in out
    code, out, _ = run(capsys, "samples", "m", *span, "--step", "1h", "--format", "json")
    assert code == 0
    [row] = json.loads(out)
    assert row["value"] is None  # the mean of +inf and -inf has no value
    code, out, _ = run(capsys, "anomalies", *span, "--format", "json")
    assert code == 0
    assert "Infinity" not in out  # not JSON: jq and browsers reject it
    assert json.loads(out)[0]["value"] is None


def test_rfc3339_forms(fixture_db: Fixture) -> None:
    from infrawatch.storage.read import parse_time

    for text in ("2027-01-15T08:00:00Z", "2027-01-15t08:00:00z", "2027-01-15T10:00:00+02:00",
                 "2027-01-15T03:00:00-05:00", "2027-01-15T08:00:00"):  # fmt: skip
        assert parse_time(text, now=0.0, option="--since") == NOW, text
    assert parse_time("1h", now=NOW, option="--since") == NOW - 3600


def test_since_in_the_future_names_now(fixture_db: Fixture, capsys) -> None:
    code, _, err = q(fixture_db, capsys, "samples", CPU, "--since", "2999-01-01T00:00:00Z")
    assert code == 2
    want = "infrawatch query: --until (now) is not after --since (2999-01-01T00:00:00Z)\n"
    assert err == want


def test_table_escapes_control_characters_in_labels(tmp_path: Path, capsys) -> None:
    """A process name is chosen by any local user: an escape sequence or newline in a label must
    not reach the terminal raw or break the table's rows."""
    import asyncio

    from infrawatch.storage.store import Store

    path = tmp_path / "ctl.db"
    evil = "x\x1b[2J\nfake row\t"

    async def create() -> None:
        async with Store(path) as store:
            await store.write([Sample("process.cpu.utilization", 0.5, NOW - 60, (("name", evil),))])

    asyncio.run(create())
    code, out, _ = run(capsys, "series", "--db", str(path))
    assert code == 0
    assert "\x1b" not in out
    assert "\t" not in out
    assert len(out.splitlines()) == 2
    assert "name=x\\x1b[2J\\nfake row\\t" in out
    span = ["--since", "2027-01-15T07:00:00Z", "--until", "2027-01-15T08:00:00Z"]
    code, out, _ = run(capsys, "samples", "process.cpu.utilization", "--db", str(path), *span)
    assert code == 0
    assert "\x1b" not in out
    assert out.splitlines()[0].startswith('process.cpu.utilization{name="x\\x1b[2J\\nfake row\\t"}')
    # json and csv carry the label exactly (they are escaped by their own rules).
    code, out, _ = run(capsys, "series", "--db", str(path), "--format", "json")
    assert json.loads(out)[0]["labels"] == {"name": evil}
