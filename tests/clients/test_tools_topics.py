"""`waterline topics list|describe|create|delete|alter`, run as subprocesses against a broker.

What the commands do is checked through confluent-kafka's AdminClient and the other way round:
a topic the CLI creates with configs reads back the same through DescribeConfigs, a config a
client sets shows in `describe` as an override, log start/end follow produce and DeleteRecords.
Also every refusal the broker sends (existing topic, invalid config naming the key, unknown
topic) and a malformed `--config` are one line on stderr with exit codes 1 and 2.
"""

import json
import re
import subprocess

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
)

from harness import waterline_bin


def wl(broker, *args, timeout=60):
    """Run `waterline ARGS` against the broker; returns the CompletedProcess."""
    return subprocess.run(
        [waterline_bin(), *args, "--bootstrap-server", broker.bootstrap, "--timeout-ms", "10000"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(proc):
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def fails(proc, code, *needles):
    """The command failed with `code`, one line on stderr containing every needle."""
    assert proc.returncode == code, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4"})


def client_configs(broker, topic):
    """name -> (value, source) as confluent-kafka's DescribeConfigs reports them."""
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    a = admin(broker)  # kept alive until the result is in
    (f,) = a.describe_configs([res]).values()
    return {k: (e.value, e.source) for k, e in f.result(timeout=30).items()}


def describe_json(broker, topic, *extra):
    out = ok(wl(broker, "topics", "describe", "--topic", topic, "--output", "json", *extra))
    (t,) = json.loads(out.stdout)["topics"]
    return t


def listed(broker):
    out = ok(wl(broker, "topics", "list", "--output", "json"))
    return {t["topic"]: t["partitions"] for t in json.loads(out.stdout)["topics"]}


def test_create_list_describe_alter_delete(broker, topic):
    out = ok(wl(broker, "topics", "create", "--topic", topic, "--partitions", "2",
                "--config", "cleanup.policy=compact", "--config", "segment.ms=3600000"))
    assert out.stdout == f"Created topic '{topic}'.\n"

    # A real client sees the overrides as the topic's own.
    configs = client_configs(broker, topic)
    assert configs["cleanup.policy"] == ("compact", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert configs["segment.ms"] == ("3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert configs["retention.ms"][1] == ConfigSource.DEFAULT_CONFIG.value

    # Keyed records on partition 0 (a compacted topic refuses keyless ones), then DeleteRecords.
    p = Producer({"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4",
                  "linger.ms": 0})
    for i in range(5):
        p.produce(topic, key=b"k%d" % (i % 2), value=b"v%d" % i, partition=0)
        p.flush(10)
    a = admin(broker)
    (f,) = a.delete_records([TopicPartition(topic, 0, 2)]).values()
    assert f.result(timeout=30).low_watermark == 2

    assert listed(broker) == {topic: 2}
    table = ok(wl(broker, "topics", "list")).stdout.splitlines()
    assert table[0].split() == ["TOPIC", "PARTITIONS"]
    assert table[1].split() == [topic, "2"]

    # describe: the overrides only (sources), log start and end and size per partition.
    t = describe_json(broker, topic)
    assert t["partition_count"] == 2 and t["replication_factor"] == 1
    assert {c["name"]: (c["value"], c["source"]) for c in t["configs"]} == {
        "cleanup.policy": ("compact", "topic"),
        "segment.ms": ("3600000", "topic"),
    }
    offsets = {p["partition"]: (p["log_start_offset"], p["log_end_offset"])
               for p in t["partitions"]}
    assert offsets == {0: (2, 5), 1: (0, 0)}
    sizes = {p["partition"]: p["size_bytes"] for p in t["partitions"]}
    assert sizes[0] > 0 and sizes[1] == 0, sizes
    text = ok(wl(broker, "topics", "describe", "--topic", topic)).stdout
    assert text.startswith(f"Topic: {topic}  Partitions: 2  Replication-Factor: 1\n"), text
    assert re.search(r"^cleanup\.policy\s+compact\s+topic$", text, re.M), text
    assert re.search(rf"^{topic}\s+0\s+\d+\s+\d+\s+\d+\s+2\s+5\s+{sizes[0]}$", text, re.M), text
    assert "segment.bytes" not in text
    # --all-configs: every setting, with where it comes from.
    everything = {c["name"]: c for c in describe_json(broker, topic, "--all-configs")["configs"]}
    assert everything["cleanup.policy"]["source"] == "topic"
    assert everything["segment.bytes"]["source"] == "default"
    # Describing every topic includes this one.
    out = ok(wl(broker, "topics", "describe", "--output", "json"))
    assert [x["topic"] for x in json.loads(out.stdout)["topics"]] == [topic]

    # alter: set one config, delete another, grow the partitions.
    out = ok(wl(broker, "topics", "alter", "--topic", topic, "--config", "retention.ms=86400000",
                "--delete-config", "segment.ms", "--partitions", "3"))
    assert out.stdout == (
        f"Updated configs of topic '{topic}': set retention.ms=86400000, deleted segment.ms.\n"
        f"Topic '{topic}' now has 3 partitions.\n")
    configs = client_configs(broker, topic)
    assert configs["retention.ms"] == ("86400000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert configs["segment.ms"][1] == ConfigSource.DEFAULT_CONFIG.value
    assert configs["cleanup.policy"][0] == "compact"
    assert listed(broker) == {topic: 3}

    # A config a client sets shows as an override; all of it survives a restart.
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "65536",
                    incremental_operation=AlterConfigOpType.SET)])
    (f,) = a.incremental_alter_configs([res]).values()
    f.result(timeout=30)
    broker.stop()
    broker.start()
    t = describe_json(broker, topic)
    assert {c["name"]: c["value"] for c in t["configs"]} == {
        "cleanup.policy": "compact",
        "retention.ms": "86400000",
        "max.message.bytes": "65536",
    }
    assert t["partition_count"] == 3
    assert t["partitions"][0]["log_start_offset"] == 2

    out = ok(wl(broker, "topics", "delete", "--topic", topic))
    assert out.stdout == f"Deleted topic '{topic}'.\n"
    assert listed(broker) == {}
    assert topic not in admin(broker).list_topics(timeout=10).topics
    del a


def test_refusals_are_one_line(broker, topic):
    ok(wl(broker, "topics", "create", "--topic", topic, "--partitions", "1"))

    fails(wl(broker, "topics", "create", "--topic", topic),
          1, "TOPIC_ALREADY_EXISTS", topic)
    out = ok(wl(broker, "topics", "create", "--topic", topic, "--if-not-exists"))
    assert out.stdout == f"Topic '{topic}' already exists.\n"

    # The broker's INVALID_CONFIG message names the key (and the allowed values).
    other = topic + "-x"
    fails(wl(broker, "topics", "create", "--topic", other, "--config", "cleanup.policy=shred"),
          1, "INVALID_CONFIG", "cleanup.policy")
    fails(wl(broker, "topics", "create", "--topic", other, "--config", "no.such.key=1"),
          1, "INVALID_CONFIG", "no.such.key")
    # Validate-only creates nothing.
    out = ok(wl(broker, "topics", "create", "--topic", other, "--validate-only"))
    assert "validate only" in out.stdout
    assert other not in listed(broker)

    # A malformed --config is a usage error naming it, found before the broker is asked.
    fails(wl(broker, "topics", "create", "--topic", other, "--config", "retention.ms"),
          2, "--config 'retention.ms'", "KEY=VALUE")
    fails(wl(broker, "topics", "alter", "--topic", topic, "--delete-config", "retention.ms=1"),
          2, "--delete-config 'retention.ms=1'")
    assert other not in listed(broker)

    # alter checks both changes first: a refused config leaves the partitions as they were.
    fails(wl(broker, "topics", "alter", "--topic", topic, "--config", "segment.ms=abc",
             "--partitions", "4"),
          1, "IncrementalAlterConfigs", "INVALID_CONFIG", "segment.ms")
    assert listed(broker) == {topic: 1}
    fails(wl(broker, "topics", "alter", "--topic", topic, "--partitions", "1"),
          1, "CreatePartitions", "INVALID_PARTITIONS")

    missing = topic + "-missing"
    for args in (
        ("alter", "--topic", missing, "--config", "retention.ms=1000"),
        ("alter", "--topic", missing, "--partitions", "2"),
        ("describe", "--topic", missing),
        ("delete", "--topic", missing),
    ):
        fails(wl(broker, "topics", *args), 1, "UNKNOWN_TOPIC_OR_PARTITION", missing)
    out = ok(wl(broker, "topics", "delete", "--topic", missing, "--topic", topic, "--if-exists"))
    assert out.stdout == f"Topic '{missing}' does not exist.\nDeleted topic '{topic}'.\n"
    assert listed(broker) == {}
