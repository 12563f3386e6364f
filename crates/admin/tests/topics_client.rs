//! The admin client's topic APIs against an in-process `waterline serve`: CreateTopics (with
//! configs, validate-only, refusals with the broker's message), DescribeConfigs (topic sources,
//! synonyms, the broker resource), IncrementalAlterConfigs (SET/DELETE, validate-only),
//! CreatePartitions and DeleteTopics.

mod common;

use common::TestBroker;
use waterline_admin::client::{
    AdminClient, AlterConfigOp, ConfigEntry, ConfigResource, ConfigSource, NewTopic,
};
use waterline_admin::codes;

fn new_topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions: Some(partitions),
        replication_factor: Some(1),
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

async fn topic_configs(c: &mut AdminClient, topic: &str) -> Vec<ConfigEntry> {
    let mut d = c
        .describe_configs(&[ConfigResource::Topic(topic.into())], true)
        .await
        .unwrap();
    d.remove(0).result.unwrap()
}

fn entry<'a>(entries: &'a [ConfigEntry], name: &str) -> &'a ConfigEntry {
    entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name} in {entries:?}"))
}

async fn partition_count(c: &mut AdminClient, topic: &str) -> Option<usize> {
    let meta = c.metadata(Some(&[topic.to_string()])).await.unwrap();
    meta.topic(topic).map(|t| t.partitions.len())
}

#[tokio::test]
async fn create_describe_alter_grow_and_delete() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;

    // Validate only: accepted, nothing created.
    let out = c
        .create_topics(
            &[new_topic("cl", 2, &[("cleanup.policy", "compact")])],
            true,
        )
        .await
        .unwrap();
    assert!(out[0].result.is_ok(), "{out:?}");
    assert_eq!(partition_count(&mut c, "cl").await, None);

    // Two topics in one request, one refused with the broker's message naming the key.
    let out = c
        .create_topics(
            &[
                new_topic(
                    "cl",
                    2,
                    &[("cleanup.policy", "compact"), ("retention.ms", "60000")],
                ),
                new_topic("bad", 1, &[("cleanup.policy", "shred")]),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(out[0].name, "cl");
    assert!(out[0].result.is_ok(), "{out:?}");
    let e = out[1].result.clone().unwrap_err();
    assert_eq!(
        (out[1].name.as_str(), e.code),
        ("bad", codes::INVALID_CONFIG)
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("CreateTopics failed for topic bad: INVALID_CONFIG (code 40): "),
        "{msg}"
    );
    assert!(msg.contains("cleanup.policy"), "{msg}");
    assert_eq!(partition_count(&mut c, "cl").await, Some(2));
    assert_eq!(partition_count(&mut c, "bad").await, None);

    let out = c
        .create_topics(&[new_topic("cl", 1, &[])], false)
        .await
        .unwrap();
    assert_eq!(
        out[0].result.as_ref().unwrap_err().code,
        codes::TOPIC_ALREADY_EXISTS
    );

    // Sources: overrides are the topic's, the rest defaults; synonyms in precedence order.
    let configs = topic_configs(&mut c, "cl").await;
    let cp = entry(&configs, "cleanup.policy");
    assert_eq!(
        (cp.value.as_deref(), cp.source),
        (Some("compact"), ConfigSource::Topic)
    );
    assert_eq!(cp.synonyms[0].2, ConfigSource::Topic);
    assert_eq!(cp.synonyms.last().map(|s| s.2), Some(ConfigSource::Default));
    assert_eq!(entry(&configs, "segment.ms").source, ConfigSource::Default);

    // SET and DELETE in one request; validate-only changes nothing.
    let ops = [
        AlterConfigOp::Set("segment.ms".into(), "3600000".into()),
        AlterConfigOp::Delete("retention.ms".into()),
    ];
    let topic = ConfigResource::Topic("cl".into());
    c.incremental_alter_configs(&topic, &ops, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        entry(&topic_configs(&mut c, "cl").await, "retention.ms").source,
        ConfigSource::Topic
    );
    c.incremental_alter_configs(&topic, &ops, false)
        .await
        .unwrap()
        .unwrap();
    let configs = topic_configs(&mut c, "cl").await;
    let seg = entry(&configs, "segment.ms");
    assert_eq!(
        (seg.value.as_deref(), seg.source),
        (Some("3600000"), ConfigSource::Topic)
    );
    assert_eq!(
        entry(&configs, "retention.ms").source,
        ConfigSource::Default
    );

    // Refusals carry the code and the broker's message.
    let e = c
        .incremental_alter_configs(
            &topic,
            &[AlterConfigOp::Set("segment.ms".into(), "abc".into())],
            false,
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_CONFIG);
    assert!(e.to_string().contains("segment.ms"), "{e}");
    let e = c
        .incremental_alter_configs(
            &ConfigResource::Topic("nope".into()),
            &[AlterConfigOp::Delete("segment.ms".into())],
            false,
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, codes::UNKNOWN_TOPIC_OR_PARTITION);
    let d = c
        .describe_configs(&[ConfigResource::Topic("nope".into())], false)
        .await
        .unwrap();
    assert_eq!(
        d[0].result.as_ref().unwrap_err().code,
        codes::UNKNOWN_TOPIC_OR_PARTITION
    );

    // The broker resource: its settings under Kafka's names, static or default.
    let meta = c.metadata(Some(&[])).await.unwrap();
    let node = meta.brokers[0].node_id.to_string();
    let d = c
        .describe_configs(
            &[
                ConfigResource::Topic("cl".into()),
                ConfigResource::Broker(node.clone()),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(d[1].resource, ConfigResource::Broker(node));
    let broker = d[1].result.as_ref().unwrap();
    assert!(
        broker.iter().any(|e| e.name == "log.cleanup.policy"
            && matches!(e.source, ConfigSource::Default | ConfigSource::StaticBroker)),
        "{broker:?}"
    );

    // Grow, validate-only first; shrinking is refused.
    let grow = [("cl".to_string(), 4)];
    assert!(
        c.create_partitions(&grow, true).await.unwrap()[0]
            .result
            .is_ok()
    );
    assert_eq!(partition_count(&mut c, "cl").await, Some(2));
    assert!(
        c.create_partitions(&grow, false).await.unwrap()[0]
            .result
            .is_ok()
    );
    assert_eq!(partition_count(&mut c, "cl").await, Some(4));
    let out = c
        .create_partitions(&[("cl".to_string(), 3)], false)
        .await
        .unwrap();
    assert_eq!(
        out[0].result.as_ref().unwrap_err().code,
        codes::INVALID_PARTITIONS
    );

    // Delete: per topic, in request order.
    let out = c
        .delete_topics(&["nope".to_string(), "cl".to_string()])
        .await
        .unwrap();
    assert_eq!(out[0].name, "nope");
    assert_eq!(
        out[0].result.as_ref().unwrap_err().code,
        codes::UNKNOWN_TOPIC_OR_PARTITION
    );
    assert!(out[1].result.is_ok(), "{out:?}");
    assert_eq!(partition_count(&mut c, "cl").await, None);
    b.stop().await;
}
