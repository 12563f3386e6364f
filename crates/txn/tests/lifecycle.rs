//! Loading, the producer-id pool, epoch exhaustion, the durability contract of `durable`, and
//! shutdown.

mod common;

use common::*;
use waterline_txn::*;

fn record(txn: &str, state: TxnState, pid: i64, epoch: i16) -> TxnRecord {
    TxnRecord {
        transactional_id: txn.to_owned(),
        state,
        producer_id: pid,
        previous_producer_id: -1,
        producer_epoch: epoch,
        last_producer_epoch: -1,
        transaction_timeout_ms: 60_000,
        partitions: Vec::new(),
        groups: Vec::new(),
        transaction_start_ms: -1,
        last_update_ms: 0,
    }
}

/// A harness whose coordinator was recovered from `records` and given ids from 2000.
fn recovered(records: Vec<TxnRecord>) -> Harness {
    let mut h = Harness::default();
    let (mut c, _) = TxnCoordinator::recover(TxnConfig::default(), records.clone(), 0);
    c.add_producer_ids(2000..2100);
    h.c = c;
    h.disk = records;
    h
}

fn init(txn: &str) -> Request {
    Request::InitProducerId(InitProducerIdRequest {
        transactional_id: txn.to_owned(),
        transaction_timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
        api_version: 4,
    })
}

#[test]
fn loading_answers_coordinator_load_in_progress() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    assert!(c.is_loading());
    let out = c.handle(1, init("t"), 0);
    assert_eq!(
        out.response(1).and_then(Response::error),
        Some(TxnError::CoordinatorLoadInProgress)
    );
    assert!(out.writes.is_empty());
    assert!(
        !out.needs_producer_ids,
        "no ids are wanted before the state is loaded"
    );
    assert_eq!(
        c.describe_transactions(&["t"])[0].error,
        Some(TxnError::CoordinatorLoadInProgress)
    );
    assert_eq!(
        c.list_transactions(&ListTransactionsFilter::default(), 0)
            .error,
        Some(TxnError::CoordinatorLoadInProgress)
    );
    let check = TxnOffsetCommitCheck {
        transactional_id: "t".to_owned(),
        group_id: "g".to_owned(),
        producer_id: 1,
        producer_epoch: 0,
        api_version: 3,
    };
    assert_eq!(
        c.check_txn_offset_commit(&check),
        Err(TxnError::CoordinatorLoadInProgress)
    );
    assert!(c.tick(1_000_000).is_empty());

    let out = c.load(vec![record("t", TxnState::Empty, 7, 3)], 0);
    assert!(!c.is_loading());
    assert!(out.needs_producer_ids);
    let out = c.handle(2, init("t"), 0);
    assert_eq!(out.writes.len(), 1);
    assert!(out.responses.is_empty(), "held until the record is durable");
    let out = c.durable(out.writes[0].id);
    assert_eq!(
        out.response(2),
        Some(&Response::InitProducerId(InitProducerIdResponse {
            error: None,
            producer_id: 7,
            producer_epoch: 4
        }))
    );
}

#[test]
fn load_keeps_the_latest_record_and_honours_tombstones() {
    let records = vec![
        record("a", TxnState::Empty, 1, 0),
        record("b", TxnState::Empty, 2, 0),
        record("a", TxnState::CompleteCommit, 1, 5),
        record("b", TxnState::Dead, 2, 0),
        record("c", TxnState::Dead, 3, 0),
        record("c", TxnState::Empty, 4, 1),
    ];
    let (c, out) = TxnCoordinator::recover(TxnConfig::default(), records, 0);
    let ids: Vec<(String, TxnState, i16)> = c
        .records()
        .into_iter()
        .map(|r| (r.transactional_id, r.state, r.producer_epoch))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("a".to_owned(), TxnState::CompleteCommit, 5),
            ("c".to_owned(), TxnState::Empty, 1)
        ]
    );
    assert!(out.markers.is_empty());
    // Idle ids get their expiration timer.
    assert_eq!(out.timers.len(), 2);
    assert!(out.timers.iter().all(|t| t.kind == TimerKind::Expiration));
}

#[test]
fn recovery_reissues_markers_and_times_out_ongoing_transactions() {
    let mut prepare = record("p", TxnState::PrepareAbort, 1, 2);
    prepare.partitions = vec![TopicPartition::new("a", 0)];
    prepare.transaction_start_ms = 100;
    let mut ongoing = record("o", TxnState::Ongoing, 2, 0);
    ongoing.partitions = vec![TopicPartition::new("b", 1)];
    ongoing.transaction_start_ms = 100;
    ongoing.transaction_timeout_ms = 1_000;
    let (mut c, out) = TxnCoordinator::recover(TxnConfig::default(), vec![prepare, ongoing], 500);
    assert_eq!(out.markers.len(), 1);
    let m = &out.markers[0];
    assert_eq!(
        (
            m.transactional_id.as_str(),
            m.producer_id,
            m.producer_epoch,
            m.result
        ),
        ("p", 1, 2, TxnResult::Abort)
    );
    assert!(out.writes.is_empty(), "recovery itself writes nothing");
    assert!(out.timers.iter().any(|t| t.transactional_id == "o"
        && t.kind == TimerKind::TransactionTimeout
        && t.deadline_ms == 1_101));
    assert_eq!(c.next_deadline(), Some(1_101));
    assert!(c.tick(1_100).writes.is_empty());
    let out = c.tick(1_101);
    assert_eq!(out.writes.len(), 1);
    assert_eq!(out.writes[0].record.state, TxnState::PrepareAbort);
    assert_eq!(out.writes[0].record.producer_epoch, 1);
    assert!(
        out.markers.is_empty(),
        "markers wait for the PrepareAbort record"
    );
    let out = c.durable(out.writes[0].id);
    assert_eq!(out.markers.len(), 1);
    assert_eq!(out.markers[0].partitions, vec![TopicPartition::new("b", 1)]);
}

#[test]
fn producer_id_pool_runs_dry_and_refills() {
    let (mut c, out) = TxnCoordinator::recover(TxnConfig::default(), Vec::new(), 0);
    assert!(out.needs_producer_ids);
    let out = c.handle(1, init("t"), 0);
    assert_eq!(
        out.response(1).and_then(Response::error),
        Some(TxnError::CoordinatorLoadInProgress)
    );
    assert!(out.needs_producer_ids);
    assert!(c.transaction("t").is_none());
    c.add_producer_ids(10..12);
    assert_eq!(c.producer_ids_available(), 2);
    let out = c.handle(2, init("t"), 0);
    assert!(out.needs_producer_ids, "below the low watermark");
    assert_eq!(out.writes[0].record.producer_id, 10);
    let out = c.handle(3, init("u"), 0);
    assert_eq!(out.writes[0].record.producer_id, 11);
    let out = c.handle(4, init("v"), 0);
    assert_eq!(
        out.response(4).and_then(Response::error),
        Some(TxnError::CoordinatorLoadInProgress)
    );
    let (start, end) = (5, 3);
    c.add_producer_ids(start..end);
    c.add_producer_ids(-4..-1);
    assert_eq!(
        c.producer_ids_available(),
        0,
        "empty and negative ranges are ignored"
    );
}

#[test]
fn exhausted_epoch_rotates_the_producer_id() {
    // 32766 is exhausted: the coordinator must keep one epoch to fence with, so the next
    // InitProducerId rotates the producer id.
    check_with(
        recovered(vec![record("t", TxnState::Empty, 1000, 32765)]),
        r#"
        init t => ok 1000/32766
        init t => ok 2000/0
        state t => Empty 2000/0 last=-1
        "#,
    );

    // KIP-360 bump at the exhausted epoch, and its retry.
    let h = recovered(vec![record("t", TxnState::CompleteCommit, 1000, 32766)]);
    check_with(
        h,
        r#"
        init t pid=1000 epoch=32766 => ok 2000/0
        state t => Empty 2000/0 last=32766
        init t pid=1000 epoch=32766 => ok 2000/0
        init t pid=1000 epoch=32765 => PRODUCER_FENCED
        "#,
    );

    // A timeout at 32766 fences with 32767; the next InitProducerId rotates.
    let mut r = record("t", TxnState::Ongoing, 1000, 32766);
    r.partitions = vec![TopicPartition::new("a", 0)];
    r.transaction_start_ms = 0;
    r.transaction_timeout_ms = 10;
    check_with(
        recovered(vec![r]),
        r#"
        tick 11 => marker ABORT 1000/32767 [a-0]
        init t => ok 2000/0
        "#,
    );
}

#[test]
fn durable_releases_exactly_the_confirmed_prefix() {
    let mut c = TxnCoordinator::recover(TxnConfig::default(), Vec::new(), 0).0;
    c.add_producer_ids(1..100);
    let a = c.handle(1, init("a"), 0);
    let b = c.handle(2, init("b"), 0);
    let (wa, wb) = (a.writes[0].id, b.writes[0].id);
    assert!(wa < wb, "write ids increase");
    assert_eq!(c.pending_requests(), vec![1, 2]);
    let out = c.durable(wa);
    assert_eq!(out.responses.len(), 1);
    assert!(out.response(1).is_some());
    assert!(
        c.durable(wa).is_empty(),
        "a repeated confirmation is a no-op"
    );
    // Confirming beyond the last write handed out is clamped to it.
    let out = c.durable(wb + 100);
    assert!(out.response(2).is_some());
    assert_eq!(c.durable_up_to(), wb);
    assert!(c.pending_requests().is_empty());
    let out = c.handle(3, init("c"), 0);
    assert_eq!(out.writes[0].id, wb + 1, "the clamp did not skip ids");
}

#[test]
fn unknown_and_repeated_marker_confirmations_are_ignored() {
    let mut h = Harness::default();
    h.step("init t");
    h.step("add t 1000 0 a-0");
    h.step("manual");
    h.step("commit t 1000 0");
    h.step("durable");
    let id = h.outstanding[0].id;
    assert!(h.c.markers_written(id + 7, 0).is_empty());
    let out = h.c.markers_written(id, 0);
    assert_eq!(out.writes.len(), 1);
    assert_eq!(out.writes[0].record.state, TxnState::CompleteCommit);
    assert!(h.c.markers_written(id, 0).is_empty());
}

#[test]
fn shutdown_answers_everything_and_returns_to_loading() {
    let mut h = Harness::default();
    h.step("init t");
    h.step("add t 1000 0 a-0");
    h.step("manual");
    let (held, _) = h.request(Request::AddPartitions(AddPartitionsRequest {
        transactional_id: "t".to_owned(),
        producer_id: 1000,
        producer_epoch: 0,
        partitions: vec![TopicPartition::new("b", 0)],
        api_version: 3,
    }));
    let (fencing, _) = h.request(init("t"));
    assert_eq!(h.c.pending_requests(), vec![held, fencing]);
    let out = h.c.shutdown();
    assert_eq!(out.responses.len(), 2);
    assert!(
        out.responses
            .iter()
            .all(|(_, r)| r.error() == Some(TxnError::NotCoordinator))
    );
    assert!(h.c.is_loading());
    assert!(h.c.pending_requests().is_empty());
    assert!(h.c.records().is_empty());
    // A late confirmation of a write from before the shutdown releases nothing.
    assert!(h.c.durable(1_000).responses.is_empty());
}

#[test]
fn timers_and_next_deadline() {
    let config = TxnConfig {
        transactional_id_expiration_ms: 10_000,
        ..TxnConfig::default()
    };
    let (mut c, _) = TxnCoordinator::recover(config, Vec::new(), 0);
    c.add_producer_ids(1..10);
    let out = c.handle(1, init("t"), 5);
    assert_eq!(
        out.timers,
        vec![TimerRequest {
            transactional_id: "t".to_owned(),
            deadline_ms: 10_005,
            kind: TimerKind::Expiration
        }]
    );
    c.durable(out.writes[0].id);
    let out = c.handle(
        2,
        Request::AddPartitions(AddPartitionsRequest {
            transactional_id: "t".to_owned(),
            producer_id: 1,
            producer_epoch: 0,
            partitions: vec![TopicPartition::new("a", 0)],
            api_version: 3,
        }),
        20,
    );
    assert_eq!(out.timers[0].kind, TimerKind::TransactionTimeout);
    assert_eq!(out.timers[0].deadline_ms, 20 + 60_000 + 1);
    assert_eq!(c.next_deadline(), Some(60_021));
}

#[test]
fn load_aborts_transactions_that_timed_out_while_down() {
    let mut ongoing = record("o", TxnState::Ongoing, 2, 4);
    ongoing.partitions = vec![TopicPartition::new("b", 1)];
    ongoing.transaction_start_ms = 100;
    ongoing.transaction_timeout_ms = 1_000;
    let (mut c, out) = TxnCoordinator::recover(TxnConfig::default(), vec![ongoing], 5_000);
    assert_eq!(out.writes.len(), 1);
    let r = &out.writes[0].record;
    assert_eq!((r.state, r.producer_epoch), (TxnState::PrepareAbort, 5));
    assert!(out.markers.is_empty());
    let out = c.durable(out.writes[0].id);
    assert_eq!(out.markers.len(), 1);
}

#[test]
fn malformed_requests_are_refused_even_while_loading() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let bad_timeout = Request::InitProducerId(InitProducerIdRequest {
        transaction_timeout_ms: 900_001,
        ..match init("t") {
            Request::InitProducerId(r) => r,
            _ => unreachable!(),
        }
    });
    let out = c.handle(1, bad_timeout, 0);
    assert_eq!(
        out.response(1).and_then(Response::error),
        Some(TxnError::InvalidTransactionTimeout)
    );
    let half_set = Request::InitProducerId(InitProducerIdRequest {
        producer_id: 5,
        ..match init("t") {
            Request::InitProducerId(r) => r,
            _ => unreachable!(),
        }
    });
    let out = c.handle(2, half_set, 0);
    assert_eq!(
        out.response(2).and_then(Response::error),
        Some(TxnError::InvalidRequest)
    );
    let out = c.handle(3, init(""), 0);
    assert_eq!(
        out.response(3).and_then(Response::error),
        Some(TxnError::InvalidRequest)
    );
    let out = c.handle(4, init("t"), 0);
    assert_eq!(
        out.response(4).and_then(Response::error),
        Some(TxnError::CoordinatorLoadInProgress)
    );
}
