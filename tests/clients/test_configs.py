"""DescribeConfigs for the broker resource, through kafka-python's and confluent-kafka's admin
clients: Kafka's names, real values, sources and read-only flags."""

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

def _broker_configs(bootstrap, config_filter):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        result = admin.describe_configs(
            [KpConfigResource(ConfigResourceType.BROKER, "0")],
            include_synonyms=True,
            config_filter=config_filter,
        )
    finally:
        admin.close()
    # kafka-python 3: {resource type: {resource name: {key: config data}}}
    return result["broker"]["0"]


def test_kafka_python_describes_the_broker(broker):
    configs = _broker_configs(broker.bootstrap, "all")
    assert len(configs) >= 20, configs
    for key in (
        "log.retention.ms",
        "log.segment.bytes",
        "num.partitions",
        "auto.create.topics.enable",
        "message.max.bytes",
        "group.initial.rebalance.delay.ms",
        "offsets.retention.minutes",
    ):
        assert key in configs, key
    assert configs["offsets.retention.minutes"]["value"] == "10080"
    assert configs["log.retention.ms"]["config_source"] == "DEFAULT_CONFIG"
    assert not configs["log.retention.ms"]["read_only"]  # dynamic
    assert configs["num.partitions"]["read_only"]
    # Static settings (flags given to the broker) are told apart from defaults.
    static = _broker_configs(broker.bootstrap, "static")
    assert "log.dirs" in static and "log.retention.ms" not in static, static
    # Nothing is dynamic yet, so kafka-python's default filter ("modified") finds nothing.
    assert _broker_configs(broker.bootstrap, "modified") == {}


def test_confluent_kafka_sees_values_sources_and_read_only(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "0")])
    (configs,) = [f.result(timeout=30) for f in futures.values()]
    # The test broker runs with flags of its own (see harness.py); values are the effective ones.
    assert configs["log.retention.ms"].value == "604800000"
    assert configs["log.retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert not configs["log.retention.ms"].is_read_only  # dynamic
    assert configs["message.max.bytes"].is_read_only is False
    assert configs["log.dirs"].is_read_only
    assert configs["message.max.bytes"].value == str(1024 * 1024 + 12)
    assert configs["offsets.retention.minutes"].value == "10080"
    assert configs["auto.create.topics.enable"].value == "true"
    # The harness points the broker at its own data dir: a static setting, not the default.
    assert configs["log.dirs"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert configs["log.dirs"].value == str(broker.data_dir)


def _topic_configs(admin, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    (f,) = admin.describe_configs([res]).values()
    return f.result(timeout=30)


def test_compacted_topics_and_live_topic_configs_with_confluent_kafka(broker, topic):
    """Create a compacted changelog topic, alter it whole and incrementally, refuse bad keys
    and values by name, and keep every change across a kill -9 and restart."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    created = admin.create_topics(
        [
            NewTopic(
                topic,
                num_partitions=2,
                replication_factor=1,
                config={"cleanup.policy": "compact", "min.insync.replicas": "2"},
            )
        ]
    )
    created[topic].result(timeout=30)
    configs = _topic_configs(admin, topic)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Accepted and reported even though one node has nothing to do with it.
    assert configs["min.insync.replicas"].value == "2"
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    # IncrementalAlterConfigs: APPEND to a list, SET, DELETE.
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.APPEND),
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("min.insync.replicas", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    (f,) = admin.incremental_alter_configs([res]).values()
    f.result(timeout=30)
    configs = _topic_configs(admin, topic)
    assert configs["cleanup.policy"].value == "compact,delete"
    assert configs["retention.ms"].value == "3600000"
    assert configs["min.insync.replicas"].value == "1"

    # Invalid value and unknown key: INVALID_CONFIG naming the key.
    for key, value, words in [
        ("cleanup.policy", "shred", "compact,delete"),
        ("retention.minutes", "5", "retention.minutes"),
        ("message.timestamp.type", "Sometimes", "LogAppendTime"),
    ]:
        bad = ConfigResource(
            ConfigResource.Type.TOPIC,
            topic,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            ],
        )
        (f,) = admin.incremental_alter_configs([bad]).values()
        with pytest.raises(KafkaException) as err:
            f.result(timeout=30)
        assert err.value.args[0].name() == "INVALID_CONFIG", err.value
        assert words in str(err.value), err.value

    # Dynamic broker defaults: set on the broker, a topic without an override follows.
    res = ConfigResource(
        ConfigResource.Type.BROKER,
        "0",
        incremental_configs=[
            ConfigEntry(
                "log.cleaner.delete.retention.ms", "1000", incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    (f,) = admin.incremental_alter_configs([res]).values()
    f.result(timeout=30)
    configs = _topic_configs(admin, topic)
    assert configs["delete.retention.ms"].value == "1000"
    assert configs["delete.retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    # A broker setting that is not a topic default is not dynamic: refused, named.
    res = ConfigResource(
        ConfigResource.Type.BROKER,
        "0",
        incremental_configs=[
            ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    (f,) = admin.incremental_alter_configs([res]).values()
    with pytest.raises(KafkaException) as err:
        f.result(timeout=30)
    assert "num.partitions" in str(err.value) and "dynamically" in str(err.value), err.value

    # The changes are durable: kill -9, restart on the same data dir.
    broker.kill()
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    configs = _topic_configs(admin, topic)
    assert configs["cleanup.policy"].value == "compact,delete"
    assert configs["retention.ms"].value == "3600000"
    assert configs["delete.retention.ms"].value == "1000"


def test_kafka_python_alters_topic_configs(broker, topic):
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})]
        )
        # AlterConfigs replaces every override; kafka-python 3 sends the topic's other
        # overrides along (it reads them first), so cleanup.policy stays compact.
        admin.alter_configs(
            [KpConfigResource(ConfigResourceType.TOPIC, topic, configs={"segment.ms": "60000"})]
        )
        got = admin.describe_configs(
            [KpConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )["topic"][topic]
        assert got["segment.ms"]["value"] == "60000"
        assert got["segment.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert got["cleanup.policy"]["value"] == "compact"
        assert got["retention.ms"]["config_source"] == "DEFAULT_CONFIG"

        # The broker-wide default of a topic setting is dynamic; kafka-python's default
        # filter ("modified") then shows it, as set on this broker.
        admin.alter_configs(
            [KpConfigResource(ConfigResourceType.BROKER, "0", configs={"log.retention.ms": "7200000"})]
        )
        modified = admin.describe_configs([KpConfigResource(ConfigResourceType.BROKER, "0")])
        entry = modified["broker"]["0"]["log.retention.ms"]
        assert entry["value"] == "7200000"
        assert entry["config_source"] == "DYNAMIC_BROKER_CONFIG"
        got = admin.describe_configs(
            [KpConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )["topic"][topic]
        assert got["retention.ms"]["value"] == "7200000"
        # Read-only broker settings are refused by kafka-python before anything is sent.
        with pytest.raises(ValueError):
            admin.alter_configs(
                [KpConfigResource(ConfigResourceType.BROKER, "0", configs={"num.partitions": "3"})]
            )
    finally:
        admin.close()
