"""confluent-kafka (librdkafka) produces and consumes against `waterline serve`."""

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import TIMESTAMP_CREATE_TIME
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import CODECS
from records import expected_offset_for_time, make_records, probe_times


def produce_all(bootstrap, topic, records, codec, idempotent=False):
    delivered = []
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.key(), msg.offset()))

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "compression.type": codec,
            "linger.ms": 20,
            "enable.idempotence": idempotent,
            "broker.address.family": "v4",
        }
    )
    for r in records:
        p.produce(
            topic,
            key=r["key"],
            value=r["value"],
            headers=r["headers"],
            timestamp=r["timestamp"],
            on_delivery=on_delivery,
        )
    assert p.flush(30) == 0, "records left undelivered"
    assert not errors, errors
    return delivered


def consume_exactly(bootstrap, topic, n, partition=0, start=0):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "assign-only-" + topic,
            "enable.auto.commit": False,
            "broker.address.family": "v4",
        }
    )
    try:
        c.assign([TopicPartition(topic, partition, start)])
        out = []
        import time

        deadline = time.monotonic() + 30
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            out.append(msg)
        return out, c
    except Exception:
        c.close()
        raise


@pytest.mark.parametrize("codec", CODECS)
def test_roundtrip_every_codec(broker, topic, codec):
    records = make_records()
    delivered = produce_all(broker.bootstrap, topic, records, codec)
    assert [off for _, off in delivered] == list(range(len(records)))

    msgs, consumer = consume_exactly(broker.bootstrap, topic, len(records))
    try:
        assert len(msgs) == len(records)
        for i, (msg, r) in enumerate(zip(msgs, records)):
            assert msg.offset() == i
            assert msg.key() == r["key"]
            assert (msg.value() or b"") == r["value"]
            assert [(k, v or b"") for k, v in (msg.headers() or [])] == r["headers"]
            assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, r["timestamp"])

        # ListOffsets by timestamp: the first offset at or after each probe time.
        for ts in probe_times(records):
            got = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)[0]
            want = expected_offset_for_time(records, ts)
            assert got.offset == (want if want is not None else -1), (ts, got)
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (low, high) == (0, len(records))
    finally:
        consumer.close()


def test_idempotent_producer(broker, topic):
    records = make_records(n=200, seed=3)
    delivered = produce_all(broker.bootstrap, topic, records, "lz4", idempotent=True)
    assert sorted(off for _, off in delivered) == list(range(len(records)))
    msgs, consumer = consume_exactly(broker.bootstrap, topic, len(records))
    consumer.close()
    assert [m.value() or b"" for m in msgs] == [r["value"] for r in records]


def test_admin_create_topic_with_partitions(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4"})
    fut = admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic]
    fut.result(timeout=15)
    md = admin.list_topics(topic, timeout=10)
    assert sorted(md.topics[topic].partitions) == [0, 1, 2, 3]

    records = make_records(n=20)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i, r in enumerate(records):
        p.produce(topic, value=r["value"], key=r["key"], partition=i % 4)
    assert p.flush(30) == 0
    for part in range(4):
        msgs, c = consume_exactly(broker.bootstrap, topic, 5, partition=part)
        c.close()
        assert [m.value() or b"" for m in msgs] == [records[i]["value"] for i in range(part, 20, 4)]
