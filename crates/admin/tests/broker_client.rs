//! The admin client against an in-process `waterline serve`: Metadata, ListOffsets (earliest,
//! latest, by timestamp) and single-record Fetch.

mod common;

use common::TestBroker;
use waterline_admin::client::OffsetSpec;
use waterline_core::TopicPartition;

const BASE: i64 = 1_700_000_000_000;

#[tokio::test]
async fn metadata_list_offsets_and_fetch() {
    let b = TestBroker::start().await;
    b.create_topic("events", 3).await;
    let ts: Vec<i64> = (0..10).map(|i| BASE + 1_000 * i).collect();
    b.produce("events", 1, &ts[..4]).await;
    b.produce("events", 1, &ts[4..]).await;
    let mut c = b.client().await;

    let meta = c.metadata(Some(&["events".to_string()])).await.unwrap();
    let t = meta.topic("events").unwrap();
    assert_eq!(
        t.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(meta.brokers.len(), 1);
    let missing = c.metadata(Some(&["nope".to_string()])).await.unwrap();
    assert!(missing.topic("nope").is_none());
    assert_eq!(missing.topics[0].error_code, 3);

    let tp = TopicPartition::new("events", 1);
    let empty = TopicPartition::new("events", 0);
    let got = c
        .list_offsets(&[
            (tp.clone(), OffsetSpec::Latest),
            (empty.clone(), OffsetSpec::Latest),
        ])
        .await
        .unwrap();
    assert_eq!(got[&tp], Some(10));
    assert_eq!(got[&empty], Some(0));
    let got = c
        .list_offsets(&[(tp.clone(), OffsetSpec::Earliest)])
        .await
        .unwrap();
    assert_eq!(got[&tp], Some(0));
    // The first record with timestamp >= ts[6] - 1 is offset 6.
    let got = c
        .list_offsets(&[(tp.clone(), OffsetSpec::Timestamp(ts[6] - 1))])
        .await
        .unwrap();
    assert_eq!(got[&tp], Some(6));
    let got = c
        .list_offsets(&[(tp.clone(), OffsetSpec::Timestamp(ts[9] + 1))])
        .await
        .unwrap();
    assert_eq!(got[&tp], None);

    for off in [0, 3, 4, 9] {
        let r = c.fetch_record(&tp, off).await.unwrap().unwrap();
        assert_eq!((r.offset, r.timestamp_ms), (off, ts[off as usize]));
    }
    assert_eq!(c.fetch_record(&tp, 10).await.unwrap(), None);
    assert_eq!(c.fetch_record(&empty, 0).await.unwrap(), None);
    let many = c
        .fetch_records(&[(tp.clone(), 5), (empty.clone(), 0)], 1 << 16)
        .await
        .unwrap();
    assert_eq!(many[&tp].unwrap().timestamp_ms, ts[5]);
    assert_eq!(many[&empty], None);

    let err = c
        .list_offsets(&[(TopicPartition::new("nope", 0), OffsetSpec::Latest)])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("UNKNOWN_TOPIC_OR_PARTITION (code 3)"),
        "{err}"
    );
    b.stop().await;
}

#[tokio::test]
async fn offset_fetch_of_many_groups_in_one_request() {
    let b = TestBroker::start().await;
    b.create_topic("orders", 2).await;
    b.produce("orders", 0, &[BASE, BASE + 1, BASE + 2]).await;
    let mut c = b.client().await;
    let groups: Vec<String> = ["a", "b", "c"].iter().map(|g| g.to_string()).collect();
    for (i, g) in groups.iter().enumerate() {
        let offsets = [(TopicPartition::new("orders", 0), i as i64 + 1)].into();
        assert!(c.offset_commit(g, &offsets).await.unwrap().is_empty());
    }
    let mut asked = groups.clone();
    asked.push("never-committed".into());
    let all = c.offset_fetch_groups(&asked).await.unwrap();
    for (i, g) in groups.iter().enumerate() {
        let got = &all[g];
        assert_eq!(got.len(), 1, "{g}: {got:?}");
        assert_eq!(got[&TopicPartition::new("orders", 0)].offset, i as i64 + 1);
        // The same as one group at a time.
        let one = c.offset_fetch(g, None).await.unwrap();
        assert_eq!(
            one.iter()
                .map(|(tp, c)| (tp.clone(), c.offset))
                .collect::<Vec<_>>(),
            got.iter()
                .map(|(tp, c)| (tp.clone(), c.offset))
                .collect::<Vec<_>>()
        );
    }
    assert!(all["never-committed"].is_empty());
}
