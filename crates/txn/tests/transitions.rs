//! Table-driven tests of every transition and error: scripts of requests, ticks and broker
//! confirmations with the expected rendering of each step (see `common` for the commands).

mod common;

use common::*;
use waterline_txn::*;

#[test]
fn commit_with_partitions_and_offsets() {
    check(
        r#"
        init t => ok 1000/0
        state t => Empty 1000/0 last=-1
        add t 1000 0 b-1 a-0 => ok
        state t => Ongoing 1000/0 last=-1 [a-0,b-1]
        offsets t 1000 0 g => ok
        txncheck t g 1000 0 => ok
        commit t 1000 0 => ok; marker COMMIT 1000/0 [a-0,b-1] groups=[g]
        state t => CompleteCommit 1000/0 last=-1
        # The next transaction starts from CompleteCommit under the same epoch.
        add t 1000 0 c-0 => ok
        abort t 1000 0 => ok; marker ABORT 1000/0 [c-0]
        state t => CompleteAbort 1000/0 last=-1
        "#,
    );
}

#[test]
fn end_txn_errors_in_every_state() {
    check(
        r#"
        init t => ok 1000/0
        commit t 1000 0 => INVALID_TXN_STATE
        abort t 1000 0 => INVALID_TXN_STATE
        commit t 999 0 => INVALID_PRODUCER_ID_MAPPING
        commit u 1000 0 => INVALID_PRODUCER_ID_MAPPING
        commit t 1000 1 => PRODUCER_FENCED
        commit t 1000 1 v=1 => INVALID_PRODUCER_EPOCH
        add t 1000 0 a-0 => ok
        commit t 1000 0 => ok; marker COMMIT 1000/0 [a-0]
        # Retries of a completed EndTxn succeed; the opposite result is refused.
        commit t 1000 0 => ok
        abort t 1000 0 => INVALID_TXN_STATE
        add t 1000 0 a-0 => ok
        abort t 1000 0 => ok; marker ABORT 1000/0 [a-0]
        abort t 1000 0 => ok
        commit t 1000 0 => INVALID_TXN_STATE
        "#,
    );
}

#[test]
fn add_errors() {
    check(
        r#"
        add t 1000 0 a-0 => INVALID_PRODUCER_ID_MAPPING
        offsets t 1000 0 g => INVALID_PRODUCER_ID_MAPPING
        init t => ok 1000/0
        add t 999 0 a-0 => INVALID_PRODUCER_ID_MAPPING
        add t 1000 1 a-0 => PRODUCER_FENCED
        add t 1000 1 a-0 v=1 => INVALID_PRODUCER_EPOCH
        add t 1000 1 a-0 v=2 => PRODUCER_FENCED
        offsets t 1000 1 g v=1 => INVALID_PRODUCER_EPOCH
        offsets t 1000 1 g v=2 => PRODUCER_FENCED
        state t => Empty 1000/0 last=-1
        "#,
    );
}

#[test]
fn requests_while_markers_are_written_wait_for_them() {
    check(
        r#"
        init t => ok 1000/0
        add t 1000 0 a-0 => ok
        manual
        commit t 1000 0 => held; write PrepareCommit 1000/0
        # The EndTxn answer and the markers wait for the PrepareCommit record.
        durable => #3 ok; marker COMMIT 1000/0 [a-0]
        commit t 1000 0 => parked
        abort t 1000 0 => INVALID_TXN_STATE
        add t 1000 0 b-0 => parked
        init t => parked
        state t => PrepareCommit 1000/0 last=-1 [a-0]
        # Markers done: parked requests run in arrival order. The AddPartitions opens a new
        # transaction, which the InitProducerId then fences with an abort under epoch 1.
        markers => write CompleteCommit 1000/0; write Ongoing 1000/0; write PrepareAbort 1000/1
        durable => #4 ok; #6 ok; marker ABORT 1000/1 [b-0]
        markers => write CompleteAbort 1000/1; write Empty 1000/2
        durable => #7 ok 1000/2
        "#,
    );
}

#[test]
fn kafka_exact_mode_answers_concurrent_transactions() {
    let config = TxnConfig {
        wait_for_markers: false,
        ..TxnConfig::default()
    };
    check_with(
        Harness::new(config),
        r#"
        init t => ok 1000/0
        add t 1000 0 a-0 => ok
        # InitProducerId on an Ongoing transaction aborts it with a bumped epoch and answers
        # CONCURRENT_TRANSACTIONS once the abort is durable; the retry gets epoch 2.
        init t => CONCURRENT_TRANSACTIONS; marker ABORT 1000/1 [a-0]
        init t => ok 1000/2
        add t 1000 2 a-0 => ok
        manual
        commit t 1000 2 => held; write PrepareCommit 1000/2
        durable => #6 ok; marker COMMIT 1000/2 [a-0]
        commit t 1000 2 => CONCURRENT_TRANSACTIONS
        abort t 1000 2 => INVALID_TXN_STATE
        add t 1000 2 b-0 => CONCURRENT_TRANSACTIONS
        offsets t 1000 2 g => CONCURRENT_TRANSACTIONS
        init t => CONCURRENT_TRANSACTIONS
        txncheck t g 1000 2 => CONCURRENT_TRANSACTIONS
        verify t 1000 2 a-0 => a-0:CONCURRENT_TRANSACTIONS
        markers => write CompleteCommit 1000/2
        durable
        commit t 1000 2 => ok
        "#,
    );
}

#[test]
fn a_new_producer_fences_the_old_one() {
    check(
        r#"
        init t => ok 1000/0
        add t 1000 0 a-0 => ok
        offsets t 1000 0 g => ok
        # The second instance's InitProducerId aborts the open transaction (epoch 1 markers
        # fence the old producer in the partitions) and then gets epoch 2.
        init t => marker ABORT 1000/1 [a-0] groups=[g]; ok 1000/2
        add t 1000 0 b-0 => PRODUCER_FENCED
        add t 1000 0 b-0 v=1 => INVALID_PRODUCER_EPOCH
        offsets t 1000 0 g => PRODUCER_FENCED
        commit t 1000 0 => PRODUCER_FENCED
        commit t 1000 0 v=1 => INVALID_PRODUCER_EPOCH
        txncheck t g 1000 0 => INVALID_PRODUCER_EPOCH
        verify t 1000 0 a-0 => a-0:PRODUCER_FENCED
        # A KIP-360 bump from the fenced epoch is refused too.
        init t pid=1000 epoch=0 => PRODUCER_FENCED
        init t pid=1000 epoch=0 v=3 => INVALID_PRODUCER_EPOCH
        state t => Empty 1000/2 last=-1
        add t 1000 2 a-0 => ok
        "#,
    );
}

#[test]
fn transaction_timeout_aborts_with_an_epoch_bump() {
    check(
        r#"
        init t timeout=1000 => ok 1000/0
        add t 1000 0 a-0 => ok
        tick 1000
        state t => Ongoing 1000/0 last=-1 [a-0]
        tick 1 => marker ABORT 1000/1 [a-0]
        state t => CompleteAbort 1000/1 last=-1
        commit t 1000 0 => PRODUCER_FENCED
        abort t 1000 0 => PRODUCER_FENCED
        abort t 1000 0 v=0 => INVALID_PRODUCER_EPOCH
        init t timeout=1000 => ok 1000/2
        # The timeout counts from the transaction's start, not from the last request.
        add t 1000 2 a-0 => ok
        tick 600
        add t 1000 2 b-0 => ok
        tick 401 => marker ABORT 1000/3 [a-0,b-0]
        "#,
    );
}

#[test]
fn transaction_timeout_bounds() {
    check(
        r#"
        init t timeout=900001 => INVALID_TRANSACTION_TIMEOUT
        init t timeout=0 => INVALID_TRANSACTION_TIMEOUT
        init t timeout=-5 => INVALID_TRANSACTION_TIMEOUT
        state t => none
        init t timeout=900000 => ok 1000/0
        describe t => Empty 1000/0 timeout=900000 start=-1 []
        init t timeout=5000 => ok 1000/1
        describe t => Empty 1000/1 timeout=5000 start=-1 []
        "#,
    );
}

#[test]
fn kip360_epoch_bump_recovery() {
    check(
        r#"
        init t => ok 1000/0
        # The producer asks for a bump with its current epoch: bumped, last epoch remembered.
        init t pid=1000 epoch=0 => ok 1000/1
        state t => Empty 1000/1 last=0
        # A retry of that bump (its answer was lost) gets the same epoch again.
        init t pid=1000 epoch=0 => ok 1000/1
        init t pid=1000 epoch=1 => ok 1000/2
        init t pid=999 epoch=2 => PRODUCER_FENCED
        init t pid=1000 => INVALID_REQUEST
        init t epoch=3 => INVALID_REQUEST
        # An unknown transactional id (e.g. expired) with the producer's old id: a new id.
        init u pid=777 epoch=3 => ok 1001/0
        # A bump during an ongoing transaction aborts it first (with the fencing epoch).
        add t 1000 2 a-0 => ok
        init t pid=1000 epoch=2 => marker ABORT 1000/3 [a-0]; PRODUCER_FENCED
        "#,
    );
}

#[test]
fn add_partitions_already_in_the_transaction_waits_for_the_first_write() {
    check(
        r#"
        init t => ok 1000/0
        manual
        add t 1000 0 a-0 => held; write Ongoing 1000/0
        # Nothing to write, but the answer must not reveal the not-yet-durable addition.
        add t 1000 0 a-0 => held
        durable => #2 ok; #3 ok
        add t 1000 0 a-0 => ok
        add t 1000 0 b-0 => held; write Ongoing 1000/0
        durable 4 => #5 ok
        "#,
    );
}

#[test]
fn txn_offset_commit_checks() {
    check(
        r#"
        txncheck x g 1000 0 => INVALID_PRODUCER_ID_MAPPING
        init t => ok 1000/0
        txncheck t g 1000 0 => INVALID_TXN_STATE
        txncheck t g 1000 0 v=5 => TRANSACTION_ABORTABLE
        add t 1000 0 a-0 => ok
        txncheck t g 1000 0 => INVALID_TXN_STATE
        offsets t 1000 0 g => ok
        txncheck t g 1000 0 => ok
        txncheck t h 1000 0 => INVALID_TXN_STATE
        txncheck t g 1000 1 => INVALID_PRODUCER_EPOCH
        txncheck t g 999 0 => INVALID_PRODUCER_ID_MAPPING
        commit t 1000 0 => ok; marker COMMIT 1000/0 [a-0] groups=[g]
        txncheck t g 1000 0 => INVALID_TXN_STATE
        "#,
    );
}

#[test]
fn verify_partitions_kip890() {
    check(
        r#"
        verify t 1000 0 a-0 => a-0:INVALID_PRODUCER_ID_MAPPING
        init t => ok 1000/0
        verify t 1000 0 a-0 => a-0:TRANSACTION_ABORTABLE
        add t 1000 0 a-0 => ok
        verify t 1000 0 a-0 b-0 => a-0:ok; b-0:TRANSACTION_ABORTABLE
        verify t 1000 1 a-0 => a-0:PRODUCER_FENCED
        verify t 999 0 a-0 => a-0:INVALID_PRODUCER_ID_MAPPING
        # An addition counts only once its record is durable.
        manual
        add t 1000 0 b-0 => held; write Ongoing 1000/0
        offsets t 1000 0 g => held; write Ongoing 1000/0
        verify t 1000 0 a-0 b-0 => a-0:ok; b-0:TRANSACTION_ABORTABLE
        txncheck t g 1000 0 => INVALID_TXN_STATE
        durable 3 => #3 ok
        verify t 1000 0 b-0 => b-0:ok
        txncheck t g 1000 0 => INVALID_TXN_STATE
        durable => #4 ok
        txncheck t g 1000 0 => ok
        "#,
    );
}

#[test]
fn describe_and_list() {
    check(
        r#"
        describe x => TRANSACTIONAL_ID_NOT_FOUND
        list => empty
        init t => ok 1000/0
        init u => ok 1001/0
        add t 1000 0 b-1 a-0 => ok
        tick 10
        describe t => Ongoing 1000/0 timeout=60000 start=0 [a-0,b-1]
        describe u => Empty 1001/0 timeout=60000 start=-1 []
        list => t:1000:Ongoing; u:1001:Empty
        list state=Ongoing => t:1000:Ongoing
        # Unknown state names are reported back, and (as in Kafka) match nothing.
        list state=Bogus => unknown=Bogus
        list pid=1001 => u:1001:Empty
        list pid=5 => empty
        list duration=5 => t:1000:Ongoing
        list duration=10 => empty
        "#,
    );
}

#[test]
fn idle_transactional_ids_expire() {
    let config = TxnConfig {
        transactional_id_expiration_ms: 1000,
        ..TxnConfig::default()
    };
    check_with(
        Harness::new(config),
        r#"
        init t => ok 1000/0
        add u 1 0 a-0 => INVALID_PRODUCER_ID_MAPPING
        init u => ok 1001/0
        add u 1001 0 a-0 => ok
        tick 999
        tick 1
        state t => none
        describe t => TRANSACTIONAL_ID_NOT_FOUND
        add t 1000 0 a-0 => INVALID_PRODUCER_ID_MAPPING
        # Ongoing transactions do not expire; they time out.
        state u => Ongoing 1001/0 last=-1 [a-0]
        # The tombstone is durable: a restart does not bring the id back.
        restart
        state t => none
        init t => ok 5000/0
        "#,
    );
}

#[test]
fn crash_after_prepare_commit_completes_the_commit() {
    check(
        r#"
        init t => ok 1000/0
        add t 1000 0 a-0 => ok
        offsets t 1000 0 g => ok
        manual
        commit t 1000 0 => held; write PrepareCommit 1000/0
        durable => #4 ok; marker COMMIT 1000/0 [a-0] groups=[g]
        # kill -9 before the markers were confirmed: recovery issues them again.
        restart => marker COMMIT 1000/0 [a-0] groups=[g]
        state t => PrepareCommit 1000/0 last=-1 [a-0] groups=[g]
        init t => parked
        markers => write CompleteCommit 1000/0; write Empty 1000/1
        durable => #5 ok 1000/1
        "#,
    );
}

#[test]
fn crash_before_prepare_commit_is_durable_aborts_at_the_timeout() {
    check(
        r#"
        init t timeout=1000 => ok 1000/0
        add t 1000 0 a-0 => ok
        manual
        commit t 1000 0 => held; write PrepareCommit 1000/0
        # The EndTxn was never answered, and its record is lost with the process.
        restart => #3 NOT_COORDINATOR
        state t => Ongoing 1000/0 last=-1 [a-0]
        auto
        tick 1001 => marker ABORT 1000/1 [a-0]
        state t => CompleteAbort 1000/1 last=-1
        "#,
    );
}

#[test]
fn crash_with_parked_requests_answers_them_not_coordinator() {
    check(
        r#"
        init t => ok 1000/0
        add t 1000 0 a-0 => ok
        manual
        init t => parked; write PrepareAbort 1000/1
        durable => marker ABORT 1000/1 [a-0]
        restart => #3 NOT_COORDINATOR; marker ABORT 1000/1 [a-0]
        markers => write CompleteAbort 1000/1
        durable
        init t => held; write Empty 1000/2
        durable => #4 ok 1000/2
        "#,
    );
}

#[test]
fn markers_carry_the_epoch_of_the_abort_and_only_added_partitions() {
    check(
        r#"
        init t => ok 1000/0
        add t 1000 0 a-0 a-1 => ok
        add t 1000 0 a-1 b-0 => ok
        offsets t 1000 0 g2 => ok
        offsets t 1000 0 g1 => ok
        commit t 1000 0 => ok; marker COMMIT 1000/0 [a-0,a-1,b-0] groups=[g1,g2]
        add t 1000 0 c-0 => ok
        commit t 1000 0 => ok; marker COMMIT 1000/0 [c-0]
        "#,
    );
}

#[test]
fn empty_transactional_id_is_an_invalid_request() {
    let mut h = Harness::default();
    let init = InitProducerIdRequest {
        transactional_id: String::new(),
        transaction_timeout_ms: 1000,
        producer_id: -1,
        producer_epoch: -1,
        api_version: 4,
    };
    assert_eq!(
        h.request(Request::InitProducerId(init)).1,
        vec!["INVALID_REQUEST"]
    );
    let end = EndTxnRequest {
        transactional_id: String::new(),
        producer_id: 1,
        producer_epoch: 0,
        result: TxnResult::Commit,
        api_version: 3,
    };
    assert_eq!(h.request(Request::EndTxn(end)).1, vec!["INVALID_REQUEST"]);
    let d = h.c.describe_transactions(&[""]);
    assert_eq!(d[0].error, Some(TxnError::InvalidRequest));
}
