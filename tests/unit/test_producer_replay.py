"""CSV replay without Kafka: time order, column mapping, counts, pacing."""

from __future__ import annotations

import csv
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from producer.cli import main
from producer.errors import ReplayFormatError
from producer.hostile import hostile_records
from producer.replay import ColumnMapping, ReplayTable, forecast_quarantine, read_replay
from producer.timefmt import parse_instant_ms
from recsys_contract.events import (
    EVENT_ID,
    PRICE,
    PRODUCT_ID,
    QUANTITY,
    RATING,
    TIMESTAMP,
    USER_ID,
)

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "replay_small.csv"
MAPPING = ColumnMapping(
    user="Customer No.",
    product="SKU code",
    timestamp="Purchased At",
    rating="Stars",
    price="Unit Price",
)
CLI_MAPPING = [
    "--replay", str(FIXTURE), "--user-col", "Customer No.", "--product-col", "SKU code",
    "--timestamp-col", "Purchased At", "--rating-col", "Stars", "--price-col", "Unit Price",
]


@pytest.fixture(scope="module")
def table() -> ReplayTable:
    return read_replay(FIXTURE, MAPPING)


@pytest.fixture(scope="module")
def events(table: ReplayTable) -> list[dict]:
    return list(table.events())


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def expected_order() -> list[str]:
    """Event ids of the fixture's rows sorted by time (stable), computed with the csv module."""
    with FIXTURE.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    order = sorted(
        range(len(rows)),
        key=lambda i: datetime.strptime(rows[i]["Purchased At"], "%Y-%m-%d %H:%M:%S"),
    )
    return [f"replay_small-{i}" for i in order]


def test_rows_come_out_in_timestamp_order_ties_in_file_order(events: list[dict]) -> None:
    assert [e[EVENT_ID] for e in events] == expected_order()


def test_every_row_is_replayed(table: ReplayTable, events: list[dict]) -> None:
    assert (len(events), table.skipped) == (20, 0)


def test_columns_are_mapped_to_event_fields(events: list[dict]) -> None:
    assert events[0] == {
        EVENT_ID: "replay_small-10",
        USER_ID: "C-21",
        PRODUCT_ID: "SKU-2",
        QUANTITY: 1,
        TIMESTAMP: "2024-03-04T08:00:00.000Z",
        PRICE: 12.0,
        RATING: 5.0,
    }


def test_ids_are_stripped_strings(events: list[dict]) -> None:
    assert {e[USER_ID] for e in events} == {"C-3", "C-5", "C-8", "C-12", "C-17", "C-21", "C-30"}


def test_ratings_are_carried_exactly_with_quantity_one(events: list[dict]) -> None:
    # Issue 23: the half-star of 4.5 and 2.5 is kept (it used to be rounded into quantity).
    sent = {e[EVENT_ID]: (e[RATING], e[QUANTITY]) for e in events}
    assert {row: sent[f"replay_small-{row}"] for row in (0, 1, 2)} == {
        0: (4.5, 1), 1: (3.0, 1), 2: (2.5, 1)}


def test_timestamps_never_go_back(events: list[dict]) -> None:
    millis = [parse_instant_ms(e[TIMESTAMP]) for e in events]
    assert millis == sorted(millis)


def test_without_amount_column_quantity_is_one() -> None:
    mapping = ColumnMapping(user="Customer No.", product="SKU code", timestamp="Purchased At")
    assert {e[QUANTITY] for e in read_replay(FIXTURE, mapping).events()} == {1}


def test_quantity_column_is_used_as_given(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "q.csv", "u,p,n,t\na,x,2,2024-01-01T00:00:00Z\nb,y,7,2024-01-01\n")
    mapping = ColumnMapping(user="u", product="p", timestamp="t", quantity="n")
    assert [e[QUANTITY] for e in read_replay(path, mapping).events()] == [2, 7]


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", "user,item,when\na,x,2024-01-01\n")
    mapping = ColumnMapping(user="user", product="product", timestamp="when")
    with pytest.raises(ReplayFormatError, match="'product'"):
        read_replay(path, mapping)


def test_rows_with_bad_timestamp_or_empty_id_are_skipped_and_counted(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "s.csv",
        "u,p,t\na,x,2024-01-01T00:00:00Z\n,x,2024-01-01T00:00:01Z\nb,y,someday\nc, ,2024-01-02\n"
        "d,z,2024-01-03T00:00:00Z\n",
    )
    table = read_replay(path, ColumnMapping(user="u", product="p", timestamp="t"))
    assert ([e[USER_ID] for e in table.events()], table.skipped) == (["a", "d"], 3)


def test_numeric_timestamps_below_1e11_are_epoch_seconds(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "e.csv", "u,p,t\na,x,1700000000\nb,y,1600000000\n")
    table = read_replay(path, ColumnMapping(user="u", product="p", timestamp="t"))
    stamps = [e[TIMESTAMP] for e in table.events()]
    assert stamps == ["2020-09-13T12:26:40.000Z", "2023-11-14T22:13:20.000Z"]


def test_numeric_timestamps_above_1e11_are_epoch_millis(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "e.csv", "u,p,t\na,x,1700000000123\n")
    table = read_replay(path, ColumnMapping(user="u", product="p", timestamp="t"))
    assert [e[TIMESTAMP] for e in table.events()] == ["2023-11-14T22:13:20.123Z"]


def test_iso_timestamps_of_mixed_precision_and_zones_are_read(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "i.csv",
        "u,p,t\na,x,2024-01-01\nb,y,2024-01-01T02:00:00.5+02:00\nc,z,2024-01-01T01:00:00Z\n",
    )
    table = read_replay(path, ColumnMapping(user="u", product="p", timestamp="t"))
    stamps = [e[TIMESTAMP] for e in table.events()]
    assert stamps == [
        "2024-01-01T00:00:00.000Z", "2024-01-01T00:00:00.500Z", "2024-01-01T01:00:00.000Z"
    ]


def test_non_iso_timestamps_are_inferred(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "n.csv", "u,p,t\na,x,03/05/2024 10:00\nb,y,03/04/2024 10:00\n")
    table = read_replay(path, ColumnMapping(user="u", product="p", timestamp="t"))
    assert [e[USER_ID] for e in table.events()] == ["b", "a"]


def test_an_explicit_timestamp_format_is_used(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", "u,p,t\na,x,02/01/2024 10:30\nb,y,01/02/2024 09:00\n")
    table = read_replay(
        path, ColumnMapping(user="u", product="p", timestamp="t"), timestamp_format="%d/%m/%Y %H:%M"
    )
    stamps = [e[TIMESTAMP] for e in table.events()]
    assert stamps == ["2024-01-02T10:30:00.000Z", "2024-02-01T09:00:00.000Z"]


def test_reading_in_small_chunks_gives_the_same_events(events: list[dict]) -> None:
    assert list(read_replay(FIXTURE, MAPPING, chunk_rows=3).events()) == events


def test_epoch_millis_output(table: ReplayTable) -> None:
    first = next(iter(table.events(epoch_ms=True)))
    assert first[TIMESTAMP] == int(datetime(2024, 3, 4, 8, tzinfo=UTC).timestamp() * 1000)


def test_rebase_moves_the_first_event_and_keeps_the_gaps(table: ReplayTable) -> None:
    start = parse_instant_ms("2026-01-01T00:00:00Z")
    original = [parse_instant_ms(e[TIMESTAMP]) for e in table.events()]
    moved = [parse_instant_ms(e[TIMESTAMP]) for e in table.events(rebase_start_ms=start)]
    assert [m - start for m in moved] == [o - original[0] for o in original]


def test_due_times_are_data_time_divided_by_speed(table: ReplayTable) -> None:
    chunks = list(table.record_chunks(speed=3600))
    due = [d for c in chunks for d in (c.due_s or [])]
    millis = [parse_instant_ms(e[TIMESTAMP]) for e in table.events()]
    assert due == pytest.approx([(m - millis[0]) / 1000 / 3600 for m in millis])


def test_records_are_keyed_by_user_and_encode_the_events(table: ReplayTable) -> None:
    records = [r for c in table.record_chunks() for r in c.records()]
    pairs = [(r.key, json.loads(r.value)) for r in records]
    assert pairs == [(e[USER_ID].encode(), e) for e in table.events()]


def test_limit_caps_the_records(table: ReplayTable) -> None:
    assert sum(len(c) for c in table.record_chunks(limit=7)) == 7


def test_cli_dry_run_replays_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*CLI_MAPPING, "--dry-run", "--log-level", "ERROR"])
    ids = [json.loads(line)[EVENT_ID] for line in capsys.readouterr().out.splitlines()]
    assert (code, ids) == (0, expected_order())


def test_cli_refuses_bad_ratio_with_replay(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*CLI_MAPPING, "--dry-run", "--bad-ratio", "0.1"])
    assert exited.value.code == 2 and "--bad-ratio" in capsys.readouterr().err


# --- defect 11 of issue 26: a replay whose timestamps the job would quarantine ------------------


def yearly_csv(tmp_path: Path, first_year: int, last_year: int) -> list[str]:
    """A purchase on every 1 March from `first_year` to `last_year` (epoch seconds); the CLI
    arguments that replay it without Kafka."""
    path = tmp_path / "years.csv"
    rows = ["user_id,product_id,timestamp"] + [
        f"u{y % 7},p{y % 5},{int(datetime(y, 3, 1, tzinfo=UTC).timestamp())}"
        for y in range(first_year, last_year + 1)
    ]
    path.write_text("\n".join(rows) + "\n")
    return ["--replay", str(path), "--dry-run", "--log-level", "WARNING"]


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_the_old_documented_replay_of_a_long_file_is_refused_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """`--speed 86400 --rebase-start now` runs event time ahead of the clock: a 20-year file
    would go to the quarantine as timestamp_in_future, all but its first hour."""
    code = main([*yearly_csv(tmp_path, 2003, 2023), "--speed", "86400", "--rebase-start", "now"])
    logged = _logged(caplog)
    assert (code, capsys.readouterr().out, "20 of 21 replayed events would be quarantined"
            in logged, "--rebase-end now" in logged) == (2, "", True, True)


def test_a_file_mostly_before_min_timestamp_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    code = main(yearly_csv(tmp_path, 1980, 2010))
    logged = _logged(caplog)
    assert (code, "20 before stream.min_timestamp" in logged, "--rebase-end now" in logged) == (
        2, True, True)


def test_a_few_old_events_are_sent_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    code = main(yearly_csv(tmp_path, 1997, 2020))
    assert (code, len(capsys.readouterr().out.splitlines()),
            "3 of 24 replayed events would be quarantined" in _logged(caplog)) == (0, 24, True)


def test_allow_quarantined_sends_a_refused_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*yearly_csv(tmp_path, 1980, 2010), "--allow-quarantined"])
    assert (code, len(capsys.readouterr().out.splitlines())) == (0, 31)


def test_rebase_end_now_replays_a_long_file_inside_the_jobs_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The documented way (docs/producer.md): the last event now, every gap kept."""
    before = datetime.now(UTC)
    code = main([*yearly_csv(tmp_path, 1995, 2020), "--rebase-end", "now"])
    out = capsys.readouterr().out
    stamps = [parse_instant_ms(json.loads(line)[TIMESTAMP]) for line in out.splitlines()]
    assert (code, _logged(caplog), len(stamps)) == (0, "", 26)
    assert parse_instant_ms("2000-01-01T00:00:00Z") <= stamps[0]
    assert stamps[-1] - before.timestamp() * 1000 < 60_000


def test_the_job_settings_file_is_used_for_the_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text('stream:\n  min_timestamp: "1970-01-01T00:00:00Z"\n')
    code = main([*yearly_csv(tmp_path, 1980, 2010), "--config", str(job)])
    assert (code, _logged(caplog)) == (0, "")


def test_the_forecast_counts_events_sent_ahead_of_their_time(table: ReplayTable) -> None:
    start = parse_instant_ms("2024-03-05T00:00:00Z")  # the fixture spans 2024-03-04 .. 03-08
    forecast = forecast_quarantine(table, shift_ms=0, speed=0, start_ms=start,
                                   min_timestamp_ms=0, max_future_ms=3_600_000)
    later = forecast_quarantine(table, shift_ms=0, speed=1, start_ms=start,
                                min_timestamp_ms=0, max_future_ms=3_600_000)
    beyond = sum(parse_instant_ms(e[TIMESTAMP]) > start + 3_600_000 for e in table.events())
    assert (forecast.in_future, later.in_future, forecast.too_old) == (beyond, 0, 0)


def test_the_producer_sends_the_hostile_corpus(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code = main(["--hostile", "--dry-run", "--log-level", "ERROR"])
    out = capsysbinary.readouterr().out
    kinds = {r.kind for r in hostile_records(now_ms=0)}
    assert (code, out.count(b'"fuzz-max"'), len(kinds) > 60) == (0, 1, True)
