//! `waterline topics` in-process against an in-process `waterline serve`: a compacted topic
//! created with configs, listed, described (overrides, log start/end, size), altered (set, delete,
//! grow) and deleted; refusals are one line with exit code 1.

mod common;

use common::{TestBroker, run};
use serde_json::Value;

const BASE: i64 = 1_700_000_000_000;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn topic_lifecycle_and_refusals() {
    let b = TestBroker::start().await;
    let r = run(
        &b.addr,
        &[
            "topics",
            "create",
            "--topic",
            "t",
            "--partitions",
            "2",
            "--config",
            "retention.ms=60000",
            "--config",
            "segment.ms=3600000",
        ],
    )
    .await;
    assert_eq!(
        (r.code, r.out.as_str()),
        (0, "Created topic 't'.\n"),
        "{r:?}"
    );
    b.produce("t", 1, &[BASE, BASE + 1, BASE + 2]).await;

    let r = run(&b.addr, &["topics", "list"]).await;
    assert_eq!(r.out, "TOPIC  PARTITIONS\nt      2\n", "{r:?}");

    let r = run(
        &b.addr,
        &["topics", "describe", "--topic", "t", "--output", "json"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let t = &json(&r.out)["topics"][0];
    let configs: Vec<(&str, &str, &str)> = t["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["value"].as_str().unwrap(),
                c["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        configs,
        vec![
            ("retention.ms", "60000", "topic"),
            ("segment.ms", "3600000", "topic")
        ]
    );
    assert_eq!(t["partitions"][1]["log_start_offset"], 0);
    assert_eq!(t["partitions"][1]["log_end_offset"], 3);
    assert_eq!(t["partitions"][0]["log_end_offset"], 0);
    // Size on disk from DescribeLogDirs: the produced batch, nothing in the empty partition.
    assert!(
        t["partitions"][1]["size_bytes"].as_i64().unwrap() > 61,
        "{t}"
    );
    assert_eq!(t["partitions"][0]["size_bytes"], 0);

    let r = run(
        &b.addr,
        &[
            "topics",
            "alter",
            "--topic",
            "t",
            "--config",
            "cleanup.policy=compact",
            "--delete-config",
            "retention.ms",
            "--partitions",
            "3",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(&b.addr, &["topics", "describe", "--topic", "t"]).await;
    assert!(
        r.out
            .starts_with("Topic: t  Partitions: 3  Replication-Factor: 1\n\nCONFIG "),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("\ncleanup.policy  compact  topic\n"),
        "{}",
        r.out
    );
    assert!(!r.out.contains("retention.ms"), "{}", r.out);

    // Refusals: one line on stderr, exit code 1, the broker's code and message.
    for (args, needle) in [
        (
            &["topics", "create", "--topic", "t"][..],
            "TOPIC_ALREADY_EXISTS",
        ),
        (
            &[
                "topics",
                "alter",
                "--topic",
                "t",
                "--config",
                "cleanup.policy=shred",
            ],
            "INVALID_CONFIG (code 40): cleanup.policy=shred: allowed values are",
        ),
        (
            &["topics", "describe", "--topic", "u"],
            "UNKNOWN_TOPIC_OR_PARTITION",
        ),
        (
            &["topics", "delete", "--topic", "u"],
            "UNKNOWN_TOPIC_OR_PARTITION",
        ),
    ] {
        let r = run(&b.addr, args).await;
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(r.out.is_empty(), "{args:?}: {r:?}");
        assert_eq!(r.err.lines().count(), 1, "{args:?}: {r:?}");
        assert!(
            r.err.starts_with("waterline topics: error: ") && r.err.contains(needle),
            "{args:?}: {r:?}"
        );
    }

    let r = run(&b.addr, &["topics", "delete", "--topic", "t"]).await;
    assert_eq!(
        (r.code, r.out.as_str()),
        (0, "Deleted topic 't'.\n"),
        "{r:?}"
    );
    let r = run(&b.addr, &["topics", "list", "--output", "json"]).await;
    assert_eq!(json(&r.out)["topics"], serde_json::json!([]));
    b.stop().await;
}
