"""DeleteRecords with confluent-kafka's AdminClient: the log start moves durably, earliest
follows it, and a consumer starting from the beginning begins there."""

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def _low_high(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm", "enable.auto.commit": False})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def test_delete_records_moves_the_log_start_durably(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=30
    )
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(10):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0)
        p.flush(10)  # one batch per record, so the new start lies inside the log
    assert _low_high(broker.bootstrap, topic) == (0, 10)

    (f,) = admin.delete_records([TopicPartition(topic, 0, 6)]).values()
    result = f.result(timeout=30)
    assert result.low_watermark == 6
    assert _low_high(broker.bootstrap, topic) == (6, 10)

    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "from-start",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        c.assign([TopicPartition(topic, 0, 0)])  # below the start: reset to earliest
        seen = []
        for _ in range(50):
            m = c.poll(0.5)
            if m is not None and not m.error():
                seen.append(m.offset())
            if len(seen) == 4:
                break
        assert seen == [6, 7, 8, 9]
    finally:
        c.close()

    broker.kill()
    broker.start()
    assert _low_high(broker.bootstrap, topic) == (6, 10)
