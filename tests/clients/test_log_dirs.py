"""DescribeLogDirs with kafka-python's admin client (confluent-kafka's AdminClient has no such
call): one log directory (the data dir) with each partition's size on disk, unknown topics
left out as Kafka does; `waterline topics describe` shows the same sizes."""

import json
import os
import subprocess

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient

from harness import waterline_bin


def _sizes(result):
    """{(topic, partition): size} from kafka-python's describe_log_dirs answer."""
    (broker,) = result
    (log_dir,) = broker["log_dirs"]
    assert log_dir["error_code"] == 0
    out = {}
    for t in log_dir["topics"]:
        for p in t["partitions"]:
            assert p["offset_lag"] == 0
            assert p["is_future_key"] is False
            out[(t["name"], p["partition_index"])] = p["partition_size"]
    return log_dir, out


def test_describe_log_dirs_reports_partition_sizes(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(
        timeout=30
    )
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(20):
        p.produce(topic, key=b"k%d" % i, value=b"x" * 100, partition=1)
    p.flush(10)

    ka = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        log_dir, sizes = _sizes(ka.describe_log_dirs({topic: [0, 1]}))
        assert os.path.realpath(log_dir["log_dir"]) == os.path.realpath(broker.data_dir)
        on_disk = os.path.getsize(
            os.path.join(broker.data_dir, "topics", topic, "1", "00000000000000000000.log")
        )
        assert sizes == {(topic, 0): 0, (topic, 1): on_disk}
        assert on_disk > 20 * 100

        # All topics (kafka-python lists them from metadata) and a topic that does not exist:
        # unknown partitions are simply absent, as with Kafka.
        _, every = _sizes(ka.describe_log_dirs())
        assert every[(topic, 1)] == on_disk
        _, none = _sizes(ka.describe_log_dirs({"no-such-topic": [0]}))
        assert none == {}
    finally:
        ka.close()

    out = subprocess.run(
        [waterline_bin(), "topics", "describe", "--topic", topic, "--output", "json",
         "--bootstrap-server", broker.bootstrap],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    parts = json.loads(out)["topics"][0]["partitions"]
    assert [p["size_bytes"] for p in parts] == [0, on_disk]
