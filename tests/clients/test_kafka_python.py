"""kafka-python produces and consumes against `waterline serve`."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from records import expected_offset_for_time, make_records, probe_times

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
def test_roundtrip_every_codec(broker, topic, codec):
    records = make_records()
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", compression_type=codec, linger_ms=20
    )
    futures = [
        producer.send(
            topic,
            key=r["key"],
            value=r["value"],
            headers=r["headers"],
            timestamp_ms=r["timestamp"],
        )
        for r in records
    ]
    producer.flush(30)
    offsets = [f.get(timeout=30).offset for f in futures]
    producer.close()
    assert offsets == list(range(len(records)))

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(records) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                got.extend(batch)
        assert len(got) == len(records)
        for i, (msg, r) in enumerate(zip(got, records)):
            assert msg.offset == i
            assert msg.key == r["key"]
            assert (msg.value or b"") == r["value"]
            assert [(k, v or b"") for k, v in msg.headers] == r["headers"]
            assert msg.timestamp == r["timestamp"]
            assert msg.timestamp_type == 0  # CreateTime

        for ts in probe_times(records):
            found = consumer.offsets_for_times({tp: ts})[tp]
            want = expected_offset_for_time(records, ts)
            if want is None:
                assert found is None, (ts, found)
            else:
                assert found is not None and found.offset == want, (ts, found)
        assert consumer.beginning_offsets([tp])[tp] == 0
        assert consumer.end_offsets([tp])[tp] == len(records)
    finally:
        consumer.close()
