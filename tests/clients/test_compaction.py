"""Compacted changelog topics with real clients: create with the admin client, write keyed
updates and tombstones over many segments, let the broker's cleaner run, and read back from
earliest exactly the latest value per live key, with offsets that increase with gaps; a group
committed inside a gap resumes at the next record. Read with confluent-kafka and kafka-python."""

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import running_broker

CLEANER = "cleaner_backoff_ms = 100\n"
KEYS = 20
UPDATES = 10
TOMBSTONED = {b"key-3", b"key-7", b"key-11"}


@pytest.fixture
def cbroker(tmp_path):
    with running_broker(tmp_path, fast_groups=True, config=CLEANER) as b:
        yield b


def _create(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {
        "cleanup.policy": "compact",
        "segment.bytes": "2048",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "500",
    }
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(timeout=30)


def _write_changelog(bootstrap, topic):
    """Updates for every key, tombstones for a few, then filler (unique keys) so that every
    update lands in a sealed segment the cleaner may rewrite. Returns the latest value per key
    (None for a tombstone)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    latest = {}
    for round_ in range(UPDATES):
        for k in range(KEYS):
            key = b"key-%d" % k
            value = b"value-%d-%d" % (k, round_)
            p.produce(topic, key=key, value=value, partition=0)
            latest[key] = value
        p.flush(30)
    for key in sorted(TOMBSTONED):
        p.produce(topic, key=key, value=None, partition=0)
        latest[key] = None
    p.flush(30)
    for i in range(60):
        key = b"filler-%d" % i
        p.produce(topic, key=key, value=b"x" * 40, partition=0)
        latest[key] = b"x" * 40
        p.flush(30)
    return latest


def _read_all(bootstrap, topic):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader-%f" % time.monotonic(),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, low)])
        out = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                if out and out[-1][0] >= high - 1:
                    break
                continue
            if m.error():
                raise KafkaException(m.error())
            out.append((m.offset(), m.key(), m.value()))
            if m.offset() >= high - 1:
                break
        return out, high
    finally:
        c.close()


def _compacted_view(records):
    view = {}
    for _, key, value in records:
        view[key] = value
    return view


def test_changelog_round_trip_latest_value_per_key(cbroker, topic):
    _create(cbroker.bootstrap, topic)
    latest = _write_changelog(cbroker.bootstrap, topic)
    live = {k: v for k, v in latest.items() if v is not None}

    # Wait for the cleaner: every update key appears once, tombstoned keys are gone.
    deadline = time.monotonic() + 60
    while True:
        records, high = _read_all(cbroker.bootstrap, topic)
        keys = [k for _, k, _ in records]
        done = len(keys) == len(set(keys)) and not (TOMBSTONED & set(keys))
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(keys) == len(set(keys)), "a key appears twice after compaction"
    assert not TOMBSTONED & set(keys), "tombstoned keys still readable past delete.retention.ms"
    assert _compacted_view(records) == live
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(offsets)
    assert high == KEYS * UPDATES + len(TOMBSTONED) + 60, "offsets are never renumbered"
    assert len(offsets) < high, "compaction left gaps"

    # A group committed inside a gap resumes at the next record.
    gap = next(o + 1 for o, nxt in zip(offsets, offsets[1:]) if nxt > o + 1)
    nxt = min(o for o in offsets if o > gap)
    c = Consumer(
        {
            "bootstrap.servers": cbroker.bootstrap,
            "group.id": "resume-in-gap",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        c.commit(offsets=[TopicPartition(topic, 0, gap)], asynchronous=False)
        c.subscribe([topic])
        first = None
        deadline = time.monotonic() + 30
        while first is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                first = m.offset()
        assert first == nxt
    finally:
        c.close()

    # kafka-python sees the same compacted log.
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KpTopicPartition

    kc = KafkaConsumer(bootstrap_servers=cbroker.bootstrap, enable_auto_commit=False)
    try:
        tp = KpTopicPartition(topic, 0)
        kc.assign([tp])
        kc.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(records) and time.monotonic() < deadline:
            for batch in kc.poll(timeout_ms=500).values():
                got.extend((m.offset, m.key, m.value) for m in batch)
        assert got == records
    finally:
        kc.close()


def test_keyless_records_are_refused_on_compacted_topics(cbroker, topic):
    _create(cbroker.bootstrap, topic)
    p = Producer({"bootstrap.servers": cbroker.bootstrap, "acks": "all", "retries": 0})
    errors = []
    for i in range(3):
        p.produce(topic, value=b"no key %d" % i, partition=0, on_delivery=lambda e, m: errors.append(e))
    p.flush(30)
    assert len(errors) == 3 and all(e is not None for e in errors), errors
    assert all(e.name() == "INVALID_RECORD" for e in errors), errors


def test_kill9_during_cleaning_loses_no_latest_value(tmp_path, topic):
    """30 rounds: write a round of keyed updates (acknowledged), let the cleaner start, kill -9
    the broker at a random moment, restart: the compacted view read from earliest always holds
    exactly the latest acknowledged value of every key."""
    import random

    from harness import Broker

    rng = random.Random(7)
    cfg = tmp_path / "waterline.toml"
    cfg.write_text("cleaner_backoff_ms = 20\n")
    b = Broker(tmp_path / "data", extra_args=["--config", str(cfg)])
    b.start()
    try:
        _create(b.bootstrap, topic)
        latest = {}
        for round_ in range(30):
            p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 2, "acks": "all"})
            for i in range(150):
                key = b"k%d" % rng.randrange(40)
                value = None if rng.random() < 0.05 else b"r%d-%d" % (round_, i)
                p.produce(topic, key=key, value=value, partition=0)
                latest[key] = value
            assert p.flush(30) == 0
            time.sleep(rng.random() * 0.3)
            b.kill()
            b.start()
            records, _ = _read_all(b.bootstrap, topic)
            view = _compacted_view(records)
            want = {k: v for k, v in latest.items() if v is not None}
            got = {k: v for k, v in view.items() if v is not None}
            assert got == want, f"round {round_}: compacted view differs"
        assert "compacted" in b.stderr_text(), "the cleaner never ran"
    finally:
        if b.proc is not None:
            b.stop()
