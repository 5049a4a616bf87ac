"""The sales generator without Kafka: determinism, schema, planted structure, bad events."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest
from kafka.partitioner.default import DefaultPartitioner

from producer import transport as transport_module
from producer.badevents import BAD_KINDS, make_bad_event
from producer.cli import main
from producer.errors import ProducerConfigError
from producer.generator import GeneratorConfig, SalesGenerator
from producer.records import RecordChunk
from producer.runner import pump
from producer.timefmt import format_timestamp, parse_instant_ms
from producer.transport import CachedKeyPartitioner, DeliveryStats
from recsys_contract.events import (
    EVENT_ID,
    PRICE,
    PRODUCT_ID,
    QUANTITY,
    RATING,
    REQUIRED_FIELDS,
    TIMESTAMP,
    USER_ID,
    Reason,
)

NOW_MS = parse_instant_ms("2026-11-27T10:00:00Z")
MIN_MS = parse_instant_ms("2000-01-01T00:00:00Z")
MAX_BYTES = 10_000
MAX_QUANTITY = 1000
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ALL_FIELDS = {EVENT_ID, USER_ID, PRODUCT_ID, QUANTITY, TIMESTAMP, PRICE}
ALL_REASON_CODES = {
    value for name, value in vars(Reason).items() if name.isupper() and isinstance(value, str)
}


def config(**overrides: object) -> GeneratorConfig:
    base: dict[str, object] = {"seed": 7, "reference_now_ms": NOW_MS}
    return GeneratorConfig(**{**base, **overrides})


def problems(raw: bytes) -> list[str]:
    """Every rule of spark_app/schema.py a raw value breaks (a reference validator)."""
    if len(raw) > MAX_BYTES:
        return [Reason.OVERSIZED]
    try:
        event = json.loads(raw)
    except ValueError:
        return [Reason.MALFORMED_JSON]
    if not isinstance(event, dict):
        return [Reason.NOT_AN_OBJECT]
    found = [Reason.of(Reason.MISSING_FIELD, f) for f in REQUIRED_FIELDS if event.get(f) is None]
    for name in (USER_ID, PRODUCT_ID):
        value = event.get(name)
        if value is not None and not isinstance(value, str):
            found.append(Reason.of(Reason.WRONG_TYPE, name))
        elif isinstance(value, str) and not value.strip():
            found.append(Reason.of(Reason.EMPTY_ID, name))
    quantity = event.get(QUANTITY)
    if quantity is not None:
        if type(quantity) is not int:
            found.append(Reason.of(Reason.WRONG_TYPE, QUANTITY))
        elif quantity <= 0:
            found.append(Reason.QUANTITY_NOT_POSITIVE)
        elif quantity > MAX_QUANTITY:
            found.append(Reason.QUANTITY_TOO_LARGE)
    stamp = event.get(TIMESTAMP)
    millis: int | None = None
    if type(stamp) is int:
        millis = stamp
    elif isinstance(stamp, str):
        try:
            millis = parse_instant_ms(stamp) if stamp.lower() != "now" else None
        except ValueError:
            millis = None
        if millis is None:
            found.append(Reason.TIMESTAMP_UNPARSEABLE)
    if millis is not None and millis > NOW_MS + 3_600_000:
        found.append(Reason.TIMESTAMP_IN_FUTURE)
    if millis is not None and millis < MIN_MS:
        found.append(Reason.TIMESTAMP_TOO_OLD)
    price = event.get(PRICE)
    if price is not None and (type(price) not in (int, float) or price < 0):
        found.append(Reason.PRICE_INVALID)
    rating = event.get(RATING)
    if rating is not None and (type(rating) not in (int, float) or not 0 <= rating <= 5):
        found.append(Reason.RATING_INVALID)
    return found


@pytest.fixture(scope="module")
def generator() -> SalesGenerator:
    return SalesGenerator(config(users=400, products=300, segments=4))


@pytest.fixture(scope="module")
def events(generator: SalesGenerator) -> list[dict]:
    return list(generator.events(40_000))


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_gives_the_same_events() -> None:
    first, second = SalesGenerator(config()), SalesGenerator(config())
    assert list(first.events(3000)) == list(second.events(3000))


def test_different_seed_gives_different_events() -> None:
    first = [(e[USER_ID], e[PRODUCT_ID]) for e in SalesGenerator(config(seed=1)).events(500)]
    second = [(e[USER_ID], e[PRODUCT_ID]) for e in SalesGenerator(config(seed=2)).events(500)]
    assert first != second


def test_same_seed_gives_the_same_records_with_bad_ones() -> None:
    cfg = config(bad_ratio=0.2)
    assert list(SalesGenerator(cfg).records(3000)) == list(SalesGenerator(cfg).records(3000))


# --- schema ---------------------------------------------------------------------------------------


def test_every_event_has_exactly_the_schema_fields(events: list[dict]) -> None:
    assert {frozenset(e) for e in events} == {frozenset(ALL_FIELDS)}


def test_every_event_field_has_its_type(events: list[dict]) -> None:
    types = {
        (type(e[EVENT_ID]), type(e[USER_ID]), type(e[PRODUCT_ID]), type(e[QUANTITY]),
         type(e[TIMESTAMP]), type(e[PRICE]))
        for e in events
    }
    assert types == {(str, str, str, int, str, float)}


def test_events_without_price_and_with_epoch_millis_have_their_schema() -> None:
    sample = list(SalesGenerator(config(with_price=False, timestamp_format="epoch_ms")).events(500))
    shapes = {(frozenset(e), type(e[TIMESTAMP])) for e in sample}
    assert shapes == {(frozenset(ALL_FIELDS - {PRICE}), int)}


def test_ids_look_like_u123_and_p45(events: list[dict]) -> None:
    bad = [e for e in events
           if not re.fullmatch(r"u\d+", e[USER_ID]) or not re.fullmatch(r"p\d+", e[PRODUCT_ID])]
    assert bad == []


def test_timestamps_are_iso_utc_with_milliseconds(events: list[dict]) -> None:
    assert [e[TIMESTAMP] for e in events if not ISO_MS.match(e[TIMESTAMP])] == []


def test_timestamps_start_at_the_configured_start_and_never_go_back() -> None:
    sample = list(SalesGenerator(config(start="2026-03-01T12:00:00Z")).events(5000))
    millis = [parse_instant_ms(e[TIMESTAMP]) for e in sample]
    start = parse_instant_ms("2026-03-01T12:00:00Z")
    assert millis[0] >= start and all(b >= a for a, b in zip(millis, millis[1:], strict=False))


def test_mean_gap_between_events_is_as_configured(events: list[dict]) -> None:
    millis = np.array([parse_instant_ms(e[TIMESTAMP]) for e in events])
    assert np.diff(millis).mean() == pytest.approx(100.0, rel=0.05)


def test_quantities_are_small_positive_mostly_one_to_three(events: list[dict]) -> None:
    counts = Counter(e[QUANTITY] for e in events)
    small = sum(counts[q] for q in (1, 2, 3)) / len(events)
    assert set(counts) <= {1, 2, 3, 4, 5} and small > 0.9


def test_event_ids_are_unique_and_follow_seed_dash_n(events: list[dict]) -> None:
    assert [e[EVENT_ID] for e in events] == [f"7-{n}" for n in range(len(events))]


def test_price_is_a_per_product_constant(events: list[dict]) -> None:
    prices = defaultdict(set)
    for e in events:
        prices[e[PRODUCT_ID]].add(e[PRICE])
    assert {len(p) for p in prices.values()} == {1}


def test_records_are_the_events_encoded_byte_for_byte(generator: SalesGenerator) -> None:
    encoded = [r.value for r in generator.records(20_000)]
    expected = [json.dumps(e, separators=(",", ":")).encode() for e in generator.events(20_000)]
    assert encoded == expected


def test_epoch_millis_records_are_the_events_encoded_byte_for_byte() -> None:
    gen = SalesGenerator(config(timestamp_format="epoch_ms", with_price=False))
    expected = [json.dumps(e, separators=(",", ":")).encode() for e in gen.events(5000)]
    assert [r.value for r in gen.records(5000)] == expected


def test_record_key_is_the_user_id(generator: SalesGenerator) -> None:
    records = generator.records(5000)
    mismatched = [r for r in records if r.key != json.loads(r.value)[USER_ID].encode()]
    assert mismatched == []


def test_good_events_break_no_rule(generator: SalesGenerator) -> None:
    assert [r.value for r in generator.records(5000) if problems(r.value)] == []


def test_records_count_is_exact_across_chunks() -> None:
    chunks = SalesGenerator(config(bad_ratio=0.1)).record_chunks(40_001)
    assert sum(len(c) for c in chunks) == 40_001


# --- planted structure ------------------------------------------------------------------------


def test_segments_are_recoverable_from_purchases(
    generator: SalesGenerator, events: list[dict]
) -> None:
    truth = generator.truth
    bought: dict[int, Counter] = defaultdict(Counter)
    for e in events:
        segment = truth.user_segment[e[USER_ID]]
        bought[segment][truth.product_category[e[PRODUCT_ID]]] += e[QUANTITY]
    k = generator.config.preferred_per_segment
    recovered = {s: {c for c, _ in counts.most_common(k)} for s, counts in bought.items()}
    assert recovered == {s: set(c) for s, c in truth.segment_categories.items()}


def test_default_segments_prefer_disjoint_categories(generator: SalesGenerator) -> None:
    preferred = [c for cats in generator.truth.segment_categories.values() for c in cats]
    assert len(preferred) == len(set(preferred)) == generator.config.n_categories


def test_truth_covers_every_user_and_product(generator: SalesGenerator) -> None:
    truth = generator.truth
    assert (len(truth.user_segment), len(truth.product_category)) == (400, 300)


def test_top_tenth_of_products_take_over_forty_percent(events: list[dict]) -> None:
    counts = sorted(Counter(e[PRODUCT_ID] for e in events).values(), reverse=True)
    assert sum(counts[: 300 // 10]) / len(events) > 0.4


def test_rank_frequency_slope_is_zipf_like(events: list[dict]) -> None:
    counts = np.array(sorted(Counter(e[PRODUCT_ID] for e in events).values(), reverse=True))
    ranks = np.arange(1, len(counts) + 1)
    head = slice(0, 100)  # the tail of a finite sample is flat noise
    slope = np.polyfit(np.log(ranks[head]), np.log(counts[head]), 1)[0]
    assert -1.6 < slope < -0.6


def test_some_users_are_heavy_buyers(events: list[dict]) -> None:
    counts = sorted(Counter(e[USER_ID] for e in events).values(), reverse=True)
    assert sum(counts[: 400 // 10]) / len(events) > 0.25


# --- bad events ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", range(4))
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_event_breaks_exactly_the_rule_it_is_labelled_with(kind: str, variant: int) -> None:
    base = next(iter(SalesGenerator(config()).events(1)))
    bad = make_bad_event(kind, base, variant=variant, now_ms=NOW_MS)
    assert problems(bad.value) == [bad.expected_reason]


@pytest.mark.parametrize("variant", range(2))
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_event_with_epoch_millis_breaks_exactly_its_rule(kind: str, variant: int) -> None:
    base = next(iter(SalesGenerator(config(timestamp_format="epoch_ms")).events(1)))
    bad = make_bad_event(kind, base, variant=variant, now_ms=NOW_MS, epoch_ms=True)
    assert problems(bad.value) == [bad.expected_reason]


def test_mixed_in_bad_records_break_exactly_their_labelled_rule() -> None:
    records = list(SalesGenerator(config(bad_ratio=0.3)).records(2000))
    found = [(problems(r.value) or [None])[0] for r in records]
    assert found == [r.expected_reason for r in records]


def test_bad_records_cover_every_reason_code() -> None:
    records = SalesGenerator(config(bad_ratio=0.5)).records(500)
    codes = {r.expected_reason.partition(":")[0] for r in records if r.expected_reason}
    assert codes == ALL_REASON_CODES


def test_bad_ratio_is_respected() -> None:
    records = list(SalesGenerator(config(bad_ratio=0.05)).records(40_000))
    share = sum(r.expected_reason is not None for r in records) / len(records)
    assert share == pytest.approx(0.05, abs=0.005)


def test_oversized_bad_event_exceeds_the_limit() -> None:
    base = next(iter(SalesGenerator(config()).events(1)))
    assert len(make_bad_event("oversized", base, now_ms=NOW_MS).value) > MAX_BYTES


# --- config and helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"products": 5}, "products"),
        ({"bad_ratio": 1.5}, "bad_ratio"),
        ({"timestamp_format": "rfc"}, "timestamp_format"),
        ({"start": "yesterday"}, "start"),
        ({"users": 2, "segments": 3}, "users"),
    ],
)
def test_bad_config_is_refused_naming_the_setting(overrides: dict, named: str) -> None:
    with pytest.raises(ProducerConfigError, match=named):
        SalesGenerator(config(**overrides))


def test_format_timestamp_round_trips() -> None:
    millis = parse_instant_ms("2025-06-30T23:59:59.987Z")
    assert format_timestamp(millis) == "2025-06-30T23:59:59.987Z"


def test_parse_instant_takes_zone_less_text_as_utc() -> None:
    expected = int(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1000)
    assert parse_instant_ms("2025-01-02T03:04:05") == expected


# --- the send loop, with an in-memory transport ----------------------------------------------


class ListTransport:
    """Keeps what it is sent; acknowledges at once."""

    def __init__(self) -> None:
        self.stats = DeliveryStats()
        self.keys: list[bytes | None] = []
        self.values: list[bytes] = []

    def send_many(self, keys: list[bytes | None], values: list[bytes]) -> None:
        self.keys += keys
        self.values += values
        self.stats.sent += len(values)
        self.stats.acked += len(values)


def test_pump_sends_every_record_in_order() -> None:
    gen = SalesGenerator(config(bad_ratio=0.1))
    transport = ListTransport()
    pump(gen.record_chunks(20_000), transport)
    assert transport.values == [r.value for r in gen.records(20_000)]


def test_pump_counts_the_bad_records_sent() -> None:
    gen = SalesGenerator(config(bad_ratio=0.1))
    transport = ListTransport()
    pump(gen.record_chunks(20_000), transport)
    expected = sum(r.expected_reason is not None for r in gen.records(20_000))
    assert transport.stats.bad_sent == expected


def test_pump_stops_when_asked() -> None:
    stop = threading.Event()
    stop.set()
    transport = ListTransport()
    outcome = pump(SalesGenerator(config()).record_chunks(None), transport, stop=stop)
    assert (outcome, transport.stats.sent) == ("stopped", 0)


def test_pump_at_a_rate_sends_no_more_than_due() -> None:
    """With a clock frozen at t=0.5 s and 100 events/s, 51 records are due, no more."""
    stop = threading.Event()
    ticks = iter([0.0] + [0.5] * 10)
    transport = ListTransport()

    def clock() -> float:
        try:
            return next(ticks)
        except StopIteration:
            stop.set()
            return 0.5

    pump(SalesGenerator(config()).record_chunks(1000), transport, rate=100, stop=stop, clock=clock)
    assert transport.stats.sent == 51


def test_pump_waits_for_replay_due_times() -> None:
    chunk = RecordChunk([b"u1", b"u2", b"u3"], [b"a", b"b", b"c"], due_s=[0.0, 0.2, 99.0])
    stop = threading.Event()
    ticks = iter([0.0, 0.3, 0.3, 0.3, 0.3])

    def clock() -> float:
        try:
            return next(ticks)
        except StopIteration:
            stop.set()
            return 0.3

    transport = ListTransport()
    pump([chunk], transport, stop=stop, clock=clock)
    assert transport.values == [b"a", b"b"]


def test_cli_dry_run_prints_the_generated_events(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--events", "50", "--dry-run", "--seed", "7", "--log-level", "ERROR"])
    lines = capsys.readouterr().out.splitlines()
    expected = [json.dumps(e, separators=(",", ":")) for e in SalesGenerator(config()).events(50)]
    assert (code, lines) == (0, expected)


def test_cli_refuses_speed_without_replay(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--speed", "10", "--dry-run"])
    assert exited.value.code == 2 and "--speed" in capsys.readouterr().err


# --- transport choices that need no broker ----------------------------------------------------


@pytest.mark.parametrize(
    ("installed", "codec"),
    [(set(), "gzip"), ({"crc32c"}, "none"), ({"lz4"}, "lz4"), ({"lz4", "crc32c"}, "lz4")],
)
def test_auto_compression_depends_on_installed_packages(
    monkeypatch: pytest.MonkeyPatch, installed: set[str], codec: str
) -> None:
    monkeypatch.setattr(transport_module, "_installed", lambda module: module in installed)
    assert transport_module.resolve_compression("auto") == codec


def test_a_codec_without_its_package_is_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport_module, "_installed", lambda module: False)
    settings = transport_module.ProducerSettings(compression_type="zstd")
    with pytest.raises(ProducerConfigError, match="zstandard"):
        transport_module.KafkaTransport("127.0.0.1:9", "sales", settings)


class FakeCluster:
    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"sales"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


@pytest.mark.parametrize("partitions", [1, 3, 7])
def test_memoised_partitioner_agrees_with_kafkas_murmur2(partitions: int) -> None:
    cluster, memo, plain = FakeCluster(partitions), CachedKeyPartitioner(), DefaultPartitioner()
    keys = [f"u{i}".encode() for i in range(500)] * 2
    chosen = [memo.partition("sales", None, k, None, None, cluster) for k in keys]
    assert chosen == [plain.partition("sales", None, k, None, None, cluster) for k in keys]


def test_cli_writes_the_planted_truth(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "truth.json"
    main(["--events", "1", "--dry-run", "--seed", "7", "--truth-out", str(out),
          "--log-level", "ERROR"])
    capsys.readouterr()
    expected = json.loads(json.dumps(SalesGenerator(config()).truth.to_dict()))
    assert json.loads(out.read_text()) == expected


def test_the_producer_takes_its_defaults_from_the_jobs_settings_file(tmp_path) -> None:
    from producer.cli import build_parser, with_settings

    settings = tmp_path / "job.yaml"
    settings.write_text("kafka: {bootstrap_servers: '127.0.0.1:19092', topic: orders}\n"
                        "stream: {max_message_bytes: 500}\n")
    from_file = with_settings(build_parser().parse_args(["--config", str(settings)]))
    flagged = with_settings(build_parser().parse_args(["--config", str(settings),
                                                       "--topic", "other"]))
    assert (from_file.bootstrap_servers, from_file.topic, from_file.connect_timeout,
            from_file.stream.max_message_bytes, flagged.topic) == (
        "127.0.0.1:19092", "orders", 15.0, 500, "other")
