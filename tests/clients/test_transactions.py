"""Kafka transactions against `waterline serve` with real clients (confluent-kafka, kafka-python):
commit, abort, read_committed vs read_uncommitted, the last stable offset, fencing, timeouts,
send_offsets_to_transaction with a real consumer group, and crash recovery."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import running_broker


def _create(bootstrap, topic, partitions=2):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic
    ].result(timeout=30)


def _txn_producer(bootstrap, txn_id=None, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id or "tx-" + uuid.uuid4().hex[:8],
        "linger.ms": 5,
    }
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(30)
    return p


def _read_all(bootstrap, topic, isolation, partitions=2, expect=None, idle=3.0):
    """Every record of `topic` from the start, as (partition, offset, value), read with the
    given isolation level until `expect` records arrived or nothing came for `idle` seconds."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader-" + uuid.uuid4().hex[:8],
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out = []
        last = time.monotonic()
        while time.monotonic() - last < idle:
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            out.append((m.partition(), m.offset(), m.value()))
            last = time.monotonic()
            if expect is not None and len(out) >= expect:
                break
        return sorted(out)
    finally:
        c.close()


def _values(records):
    return sorted(v for _, _, v in records)


def test_commit_and_abort_are_seen_by_isolation_level(broker, topic):
    _create(broker.bootstrap, topic)
    p = _txn_producer(broker.bootstrap)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, value=b"a%d" % i, partition=i % 2)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, value=b"b%d" % i, partition=i % 2)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    for i in range(4):
        p.produce(topic, value=b"c%d" % i, partition=i % 2)
    p.commit_transaction(30)

    committed = _read_all(broker.bootstrap, topic, "read_committed", expect=14)
    assert _values(committed) == sorted(
        [b"a%d" % i for i in range(10)] + [b"c%d" % i for i in range(4)]
    )
    everything = _read_all(broker.bootstrap, topic, "read_uncommitted", expect=20)
    assert len(everything) == 20, "aborted records stay in the log for read_uncommitted"
    # Offsets keep gaps where the control records (markers) are: 3 per partition here.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
    try:
        for part in range(2):
            low, high = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
            assert (low, high) == (0, 10 + 3)
    finally:
        c.close()


def test_open_transaction_holds_back_read_committed_at_the_last_stable_offset(broker, topic):
    _create(broker.bootstrap, topic, partitions=1)
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    plain.produce(topic, value=b"before", partition=0)
    plain.flush(10)
    p = _txn_producer(broker.bootstrap)
    p.begin_transaction()
    p.produce(topic, value=b"pending", partition=0)
    p.flush(30)
    # Records after the open transaction are held back too.
    plain.produce(topic, value=b"after", partition=0)
    plain.flush(10)

    assert _values(_read_all(broker.bootstrap, topic, "read_committed", 1, idle=2)) == [b"before"]
    assert _values(_read_all(broker.bootstrap, topic, "read_uncommitted", 1, expect=3)) == [
        b"after",
        b"before",
        b"pending",
    ]
    p.commit_transaction(30)
    assert _values(_read_all(broker.bootstrap, topic, "read_committed", 1, expect=3)) == [
        b"after",
        b"before",
        b"pending",
    ]


def test_a_second_producer_with_the_same_id_fences_the_first(broker, topic):
    _create(broker.bootstrap, topic, partitions=1)
    txn_id = "fence-" + uuid.uuid4().hex[:8]
    old = _txn_producer(broker.bootstrap, txn_id)
    old.begin_transaction()
    old.produce(topic, value=b"zombie", partition=0)
    old.flush(30)

    new = _txn_producer(broker.bootstrap, txn_id)  # aborts old's open transaction
    with pytest.raises(KafkaException) as e:
        old.commit_transaction(30)
    err = e.value.args[0]
    assert err.fatal() or "fenced" in err.str().lower(), err.str()

    new.begin_transaction()
    new.produce(topic, value=b"fresh", partition=0)
    new.commit_transaction(30)
    assert _values(_read_all(broker.bootstrap, topic, "read_committed", 1, expect=1)) == [
        b"fresh"
    ]


def test_transaction_timeout_aborts_an_abandoned_transaction(broker, topic):
    _create(broker.bootstrap, topic, partitions=1)
    p = _txn_producer(broker.bootstrap, **{"transaction.timeout.ms": 2000})
    p.begin_transaction()
    p.produce(topic, value=b"abandoned", partition=0)
    p.flush(30)
    time.sleep(4)
    # The coordinator aborted it: the last stable offset moved past it and nothing is visible.
    assert _read_all(broker.bootstrap, topic, "read_committed", 1, idle=2) == []
    with pytest.raises(KafkaException):
        p.commit_transaction(30)


def test_send_offsets_to_transaction_commits_group_offsets_with_the_outputs(gbroker, topic):
    bootstrap = gbroker.bootstrap
    src, dst = topic + "-in", topic + "-out"
    _create(bootstrap, src, partitions=1)
    _create(bootstrap, dst, partitions=1)
    plain = Producer({"bootstrap.servers": bootstrap})
    for i in range(20):
        plain.produce(src, value=b"%d" % i, partition=0)
    plain.flush(10)

    group = "eos-" + uuid.uuid4().hex[:8]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([src])
    p = _txn_producer(bootstrap)

    def one_batch(n, commit):
        got = []
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
        assert len(got) == n
        p.begin_transaction()
        for m in got:
            p.produce(dst, value=b"out-" + m.value(), partition=0)
        p.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)

    def committed():
        (tp,) = consumer.committed([TopicPartition(src, 0)], timeout=10)
        return tp.offset

    try:
        one_batch(10, commit=True)
        assert committed() == 10
        one_batch(5, commit=False)
        assert committed() == 10, "an aborted transaction's offsets are discarded"
    finally:
        consumer.close()
    outputs = _read_all(bootstrap, dst, "read_committed", 1, expect=10)
    assert _values(outputs) == sorted(b"out-%d" % i for i in range(10))


def test_transactions_survive_kill_9(tmp_path, topic):
    with running_broker(tmp_path) as b:
        _create(b.bootstrap, topic, partitions=2)
        b.pin_port()
        done = _txn_producer(b.bootstrap)
        done.begin_transaction()
        for i in range(6):
            done.produce(topic, value=b"kept%d" % i, partition=i % 2)
        done.commit_transaction(30)
        open_txn = _txn_producer(b.bootstrap, **{"transaction.timeout.ms": 3000})
        open_txn.begin_transaction()
        for i in range(4):
            open_txn.produce(topic, value=b"lost%d" % i, partition=i % 2)
        open_txn.flush(30)

        b.kill()
        b.start()
        # The committed transaction is intact; the open one is aborted at its timeout after
        # recovery, which releases the last stable offset.
        time.sleep(4)
        committed = _read_all(b.bootstrap, topic, "read_committed", expect=6, idle=3)
        assert _values(committed) == sorted(b"kept%d" % i for i in range(6))
        # The same transactional id works again after the restart.
        again = _txn_producer(b.bootstrap, **{"transaction.timeout.ms": 3000})
        again.begin_transaction()
        again.produce(topic, value=b"after", partition=0)
        again.commit_transaction(30)
        assert b"after" in _values(
            _read_all(b.bootstrap, topic, "read_committed", expect=7, idle=3)
        )


def test_kafka_python_transactional_producer(broker, topic):
    kafka = pytest.importorskip("kafka")
    _create(broker.bootstrap, topic, partitions=1)
    p = kafka.KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        transactional_id="kp-" + uuid.uuid4().hex[:8],
    )
    try:
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, b"kp-committed", partition=0)
        p.commit_transaction()
        p.begin_transaction()
        p.send(topic, b"kp-aborted", partition=0)
        p.flush()
        p.abort_transaction()
    finally:
        p.close()
    c = kafka.KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    try:
        c.assign([kafka.TopicPartition(topic, 0)])
        c.seek_to_beginning()
        values = [m.value for m in c]
    finally:
        c.close()
    assert values == [b"kp-committed"]


def _committed_total(bootstrap, group, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        c.close()


def test_exactly_once_through_kill_9_of_the_broker_and_the_worker(tmp_path, topic):
    """Crash loop: a consume-transform-produce worker runs while the broker (even rounds) or the
    worker (odd rounds) is killed with SIGKILL, 20 times each; at the end each input's output
    is visible to a read_committed reader exactly once and the group's offsets are at the
    input's end."""
    import os
    import random
    import subprocess
    import sys

    rounds = int(os.environ.get("WATERLINE_TXN_CRASH_ROUNDS", "40"))
    n, partitions = 16000, 2
    src, dst, group = topic + "-in", topic + "-out", "ctp-" + topic
    worker_py = os.path.join(os.path.dirname(__file__), "txn_worker.py")
    rng = random.Random(42)
    with running_broker(tmp_path) as b:
        _create(b.bootstrap, src, partitions)
        _create(b.bootstrap, dst, partitions)
        b.pin_port()
        plain = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
        for i in range(n):
            plain.produce(src, value=b"%d" % i, partition=i % partitions)
        plain.flush(30)

        def start_worker():
            return subprocess.Popen(
                [sys.executable, worker_py, b.bootstrap, src, dst, group, "ctp-txn", str(partitions)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        worker = start_worker()
        busy_rounds = 0
        try:
            for r in range(rounds):
                time.sleep(rng.uniform(0.5, 1.5))
                if r % 2 == 0:
                    b.kill()
                    b.start()
                else:
                    worker.kill()
                    worker.wait()
                if worker.poll() is not None:
                    worker = start_worker()
                if r % 2 == 1 and _committed_total(b.bootstrap, group, src, partitions) < n:
                    busy_rounds += 1
            print(f"{busy_rounds} of {rounds // 2} worker kills hit an unfinished input")
            # Let the worker finish the input.
            deadline = time.monotonic() + 120
            while _committed_total(b.bootstrap, group, src, partitions) < n:
                assert time.monotonic() < deadline, "the worker did not finish the input"
                if worker.poll() is not None:
                    worker = start_worker()
                time.sleep(0.5)
        finally:
            worker.kill()
            worker.wait()
        assert _committed_total(b.bootstrap, group, src, partitions) == n
        out = _read_all(b.bootstrap, dst, "read_committed", partitions, expect=n + 1, idle=3)
        values = sorted(v for _, _, v in out)
        dupes = len(values) - len(set(values))
        assert dupes == 0, f"{dupes} outputs appear more than once"
        assert values == sorted(b"out-%d" % i for i in range(n))


def test_kafka_python_admin_lists_and_describes_transactions_and_producers(broker, topic):
    kafka = pytest.importorskip("kafka")
    from kafka.admin import KafkaAdminClient

    _create(broker.bootstrap, topic, partitions=1)
    txn_id = "desc-" + uuid.uuid4().hex[:8]
    p = _txn_producer(broker.bootstrap, txn_id)
    p.begin_transaction()
    p.produce(topic, value=b"open", partition=0)
    p.flush(30)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        listed = admin.list_transactions(state_filters=["Ongoing"])
        text = repr(listed)
        assert txn_id in text, text
        described = admin.describe_transactions([txn_id])
        d = described[txn_id]
        text = repr(d)
        assert "Ongoing" in text and topic in text, text
        producers = admin.describe_producers([kafka.TopicPartition(topic, 0)])
        (state,) = producers.values()
        text = repr(state)
        # The open transaction starts at offset 0 of the partition.
        assert "current_transaction_start_offset=0" in text.replace(" ", ""), text
        p.commit_transaction(30)
        assert txn_id not in repr(admin.list_transactions(state_filters=["Ongoing"]))
    finally:
        admin.close()
