"""DescribeConfigs for the broker resource, through kafka-python's and confluent-kafka's admin
clients: Kafka's names, real values, sources and read-only flags."""

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
    assert configs["log.retention.ms"]["read_only"]
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
    assert configs["log.retention.ms"].is_read_only
    assert configs["message.max.bytes"].value == str(1024 * 1024 + 12)
    assert configs["offsets.retention.minutes"].value == "10080"
    assert configs["auto.create.topics.enable"].value == "true"
    # The harness points the broker at its own data dir: a static setting, not the default.
    assert configs["log.dirs"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert configs["log.dirs"].value == str(broker.data_dir)
