"""CSV replay without Kafka: time order, column mapping, counts, pacing."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from producer.cli import main
from producer.errors import ReplayFormatError
from producer.replay import ColumnMapping, ReplayTable, read_replay
from producer.timefmt import parse_instant_ms
from recsys_contract.events import EVENT_ID, PRICE, PRODUCT_ID, QUANTITY, TIMESTAMP, USER_ID

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
        QUANTITY: 5,
        TIMESTAMP: "2024-03-04T08:00:00.000Z",
        PRICE: 12.0,
    }


def test_ids_are_stripped_strings(events: list[dict]) -> None:
    assert {e[USER_ID] for e in events} == {"C-3", "C-5", "C-8", "C-12", "C-17", "C-21", "C-30"}


def test_ratings_become_quantity_rounded_half_up_at_least_one(events: list[dict]) -> None:
    quantity = {e[EVENT_ID]: e[QUANTITY] for e in events}
    picked = {row: quantity[f"replay_small-{row}"] for row in (0, 2, 4, 5, 12, 1)}
    assert picked == {0: 5, 2: 3, 4: 1, 5: 4, 12: 2, 1: 3}


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
