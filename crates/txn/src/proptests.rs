//! Property test: random interleavings of InitProducerId (plain and KIP-360), AddPartitions,
//! AddOffsets, EndTxn, TxnOffsetCommit checks, clock ticks, partial durability confirmations,
//! marker confirmations and crashes (recovery from the durable records only), by several
//! producer instances per transactional id, against these properties:
//!
//! - every request is answered exactly once (at the latest by the crash that loses it);
//! - a producer identity (producer id, epoch) that was superseded by a newer InitProducerId
//!   answer, or was told PRODUCER_FENCED / INVALID_PRODUCER_EPOCH, never gets success again;
//! - every marker write names exactly the partitions and groups whose additions were answered
//!   OK in that transaction (a marker re-issued after a crash repeats the previous one), and an
//!   EndTxn answered OK is backed by a marker of its result;
//! - a marker write is issued only when the PrepareCommit/PrepareAbort record it completes is
//!   durable, and a CompleteCommit/CompleteAbort record is only produced by confirming that
//!   transaction's markers;
//! - no response is released before the records it depends on are durable: a response is
//!   only ever released by the call that makes its transactional id's last write durable, or
//!   by a call that writes nothing for it;
//! - once everything is confirmed, recovering from the durable records gives exactly the live
//!   state; the coordinator's internal invariants hold after every step.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::*;

const CLIENTS: usize = 4;
const TIMEOUT_MS: i32 = 1_000;

fn txn_of(client: usize) -> String {
    format!("t{}", client % 2)
}

fn partition(i: u8) -> TopicPartition {
    TopicPartition::new("p", i32::from(i))
}

#[derive(Debug, Clone)]
enum Op {
    Init {
        client: usize,
        kip360: bool,
        version: i16,
    },
    Add {
        client: usize,
        parts: Vec<u8>,
    },
    Offsets {
        client: usize,
        group: u8,
    },
    End {
        client: usize,
        commit: bool,
    },
    Check {
        client: usize,
        group: u8,
    },
    Tick {
        advance: u64,
    },
    Durable {
        all: bool,
    },
    Markers {
        index: usize,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    prop_oneof![
        3 => (client.clone(), prop::bool::weighted(0.3), prop::sample::select(vec![3i16, 4]))
            .prop_map(|(client, kip360, version)| Op::Init { client, kip360, version }),
        4 => (client.clone(), prop::collection::vec(0u8..3, 1..3))
            .prop_map(|(client, parts)| Op::Add { client, parts }),
        2 => (client.clone(), 0u8..2).prop_map(|(client, group)| Op::Offsets { client, group }),
        3 => (client.clone(), any::<bool>()).prop_map(|(client, commit)| Op::End { client, commit }),
        1 => (client.clone(), 0u8..2).prop_map(|(client, group)| Op::Check { client, group }),
        2 => prop_oneof![Just(0u64), 1u64..600, 600u64..1_500, 5_000u64..6_000]
            .prop_map(|advance| Op::Tick { advance }),
        4 => any::<bool>().prop_map(|all| Op::Durable { all }),
        3 => (0usize..3).prop_map(|index| Op::Markers { index }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Init,
    Add(Vec<TopicPartition>),
    Offsets(String),
    End(TxnResult),
}

#[derive(Debug, Clone)]
struct Flight {
    client: usize,
    txn: String,
    identity: (i64, i16),
    sent: Sent,
}

struct Sim {
    c: TxnCoordinator,
    config: TxnConfig,
    now: u64,
    next_id: RequestId,
    identities: Vec<Option<(i64, i16)>>,
    in_flight: BTreeMap<RequestId, Flight>,
    answered: BTreeSet<RequestId>,
    unconfirmed: Vec<Write>,
    disk: Vec<TxnRecord>,
    outstanding: Vec<MarkerWrite>,
    /// Identities that must never succeed again, per transactional id.
    dead: BTreeSet<(String, i64, i16)>,
    /// Identities handed out per transactional id, in order.
    issued: BTreeMap<String, Vec<(i64, i16)>>,
    /// Partitions and groups acknowledged in the open transaction, per transactional id.
    acked: BTreeMap<String, (BTreeSet<TopicPartition>, BTreeSet<String>)>,
    /// The last marker issued per transactional id (result, partitions, groups).
    last_marker: BTreeMap<String, (TxnResult, Vec<TopicPartition>, Vec<String>)>,
    next_pid: i64,
    /// Writes that abort a transaction on the coordinator's initiative (timeout, or a new
    /// producer's InitProducerId): once durable, every identity handed out so far is fenced.
    fencing_writes: BTreeMap<WriteId, String>,
}

impl Sim {
    fn new(wait_for_markers: bool) -> Sim {
        let config = TxnConfig {
            max_transaction_timeout_ms: 10_000,
            transactional_id_expiration_ms: 5_000,
            wait_for_markers,
            producer_id_low_watermark: 4,
        };
        let (mut c, _) = TxnCoordinator::recover(config.clone(), Vec::new(), 0);
        c.add_producer_ids(100..110);
        Sim {
            c,
            config,
            now: 0,
            next_id: 0,
            identities: vec![None; CLIENTS],
            in_flight: BTreeMap::new(),
            answered: BTreeSet::new(),
            unconfirmed: Vec::new(),
            disk: Vec::new(),
            outstanding: Vec::new(),
            dead: BTreeSet::new(),
            issued: BTreeMap::new(),
            acked: BTreeMap::new(),
            last_marker: BTreeMap::new(),
            next_pid: 110,
            fencing_writes: BTreeMap::new(),
        }
    }

    /// `confirmed_marker`: the transactional id whose markers this call confirmed, if any.
    fn absorb(
        &mut self,
        out: Output,
        confirmed_marker: Option<&str>,
        durable_call: bool,
    ) -> Result<(), TestCaseError> {
        if out.needs_producer_ids {
            self.c.add_producer_ids(self.next_pid..self.next_pid + 10);
            self.next_pid += 10;
        }
        for w in &out.writes {
            let r = &w.record;
            if matches!(r.state, TxnState::CompleteCommit | TxnState::CompleteAbort) {
                prop_assert_eq!(
                    confirmed_marker,
                    Some(r.transactional_id.as_str()),
                    "Complete record without its markers: {:?}",
                    r
                );
            }
        }
        self.unconfirmed.extend(out.writes);
        let mut ended = Vec::new();
        for (id, response) in out.responses {
            prop_assert!(self.answered.insert(id), "request {} answered twice", id);
            let Some(flight) = self.in_flight.remove(&id) else {
                prop_assert!(false, "answer to unknown request {}", id);
                continue;
            };
            // Durability: a call that confirms nothing releases a response only when the id
            // has no write pending (its own writes included).
            if !durable_call {
                prop_assert!(
                    self.unconfirmed
                        .iter()
                        .all(|w| w.record.transactional_id != flight.txn),
                    "response {} released with a pending write",
                    id
                );
            }
            if let (Sent::End(result), None) = (&flight.sent, response.error()) {
                ended.push((flight.txn.clone(), *result));
            }
            self.on_response(flight, response)?;
        }
        // An EndTxn answered OK is backed by the marker it caused (issued in this same
        // output) or, for a retry of a completed EndTxn, by the previous one.
        for (txn, result) in ended {
            let before = self.last_marker.get(&txn).map(|m| m.0);
            let now = out
                .markers
                .iter()
                .any(|m| m.transactional_id == txn && m.result == result);
            prop_assert!(
                before == Some(result) || now,
                "EndTxn OK without a marker of its result"
            );
        }
        for m in &out.markers {
            // The PrepareX record is durable: it is the latest durable record of the id.
            let latest = self
                .disk
                .iter()
                .rev()
                .find(|r| r.transactional_id == m.transactional_id);
            let expected_state = match m.result {
                TxnResult::Commit => TxnState::PrepareCommit,
                TxnResult::Abort => TxnState::PrepareAbort,
            };
            prop_assert!(
                latest.is_some_and(|r| r.state == expected_state
                    && r.producer_epoch == m.producer_epoch
                    && r.partitions == m.partitions
                    && r.groups == m.groups),
                "marker {:?} without its durable record {:?}",
                m,
                latest
            );
            let entry = self.acked.entry(m.transactional_id.clone()).or_default();
            let contents = (m.result, m.partitions.clone(), m.groups.clone());
            if entry.0.is_empty()
                && entry.1.is_empty()
                && self.last_marker.get(&m.transactional_id) == Some(&contents)
            {
                // Nothing acknowledged since the last marker: a re-issue after a crash.
                self.outstanding.push(m.clone());
                continue;
            }
            let acked_parts: Vec<TopicPartition> = entry.0.iter().cloned().collect();
            let acked_groups: Vec<String> = entry.1.iter().cloned().collect();
            prop_assert_eq!(&m.partitions, &acked_parts, "marker {:?}", m);
            prop_assert_eq!(&m.groups, &acked_groups, "marker {:?}", m);
            *entry = Default::default();
            self.last_marker
                .insert(m.transactional_id.clone(), contents);
            self.outstanding.push(m.clone());
        }
        Ok(())
    }

    fn on_response(&mut self, f: Flight, response: Response) -> Result<(), TestCaseError> {
        let error = response.error();
        let key = (f.txn.clone(), f.identity.0, f.identity.1);
        if error.is_none() && f.sent != Sent::Init {
            prop_assert!(
                !self.dead.contains(&key),
                "fenced identity {:?} succeeded: {:?}",
                key,
                f.sent
            );
        }
        if matches!(
            error,
            Some(TxnError::ProducerFenced | TxnError::InvalidProducerEpoch)
        ) {
            self.dead.insert(key.clone());
        }
        match (&f.sent, &response) {
            (Sent::Init, Response::InitProducerId(r)) if r.error.is_none() => {
                let new = (r.producer_id, r.producer_epoch);
                let issued = self.issued.entry(f.txn.clone()).or_default();
                if let Some(&(pid, epoch)) = issued.last()
                    && pid == new.0
                {
                    prop_assert!(
                        new.1 >= epoch,
                        "epoch went back: {:?} after {:?}",
                        new,
                        (pid, epoch)
                    );
                }
                for &(pid, epoch) in issued.iter() {
                    if (pid, epoch) != new {
                        self.dead.insert((f.txn.clone(), pid, epoch));
                    }
                }
                issued.push(new);
                prop_assert!(
                    !self.dead.contains(&(f.txn.clone(), new.0, new.1)),
                    "dead identity reissued"
                );
                self.identities[f.client] = Some(new);
            }
            (Sent::Add(parts), _) if error.is_none() => {
                self.acked
                    .entry(f.txn)
                    .or_default()
                    .0
                    .extend(parts.iter().cloned());
            }
            (Sent::Offsets(g), _) if error.is_none() => {
                self.acked.entry(f.txn).or_default().1.insert(g.clone());
            }
            _ => {}
        }
        Ok(())
    }

    fn send(&mut self, client: usize, sent: Sent, request: Request) -> Result<(), TestCaseError> {
        self.next_id += 1;
        let id = self.next_id;
        let identity = self.identities[client].unwrap_or((NO_PRODUCER_ID, NO_PRODUCER_EPOCH));
        self.in_flight.insert(
            id,
            Flight {
                client,
                txn: txn_of(client),
                identity,
                sent,
            },
        );
        let out = self.c.handle(id, request, self.now);
        self.note_fencing(&out);
        self.absorb(out, None, false)
    }

    /// PrepareAbort records written by a tick or an InitProducerId abort on the coordinator's
    /// initiative.
    fn note_fencing(&mut self, out: &Output) {
        for w in &out.writes {
            if w.record.state == TxnState::PrepareAbort {
                let is_end_txn = self.in_flight.values().any(|f| {
                    f.txn == w.record.transactional_id && f.sent == Sent::End(TxnResult::Abort)
                });
                if !is_end_txn {
                    self.fencing_writes
                        .insert(w.id, w.record.transactional_id.clone());
                }
            }
        }
    }

    fn confirm(&mut self, up_to: WriteId) -> Result<(), TestCaseError> {
        let (done, rest): (Vec<Write>, Vec<Write>) =
            self.unconfirmed.drain(..).partition(|w| w.id <= up_to);
        self.unconfirmed = rest;
        // A durable record fences every identity of its id with an older epoch (or an older
        // producer id); a coordinator-initiated abort fences every identity so far. Answers
        // released by this same confirmation were applied before those records, so the
        // fencing counts from the next call on.
        let mut fenced = Vec::new();
        for w in &done {
            let r = &w.record;
            let fence_all = self.fencing_writes.remove(&w.id).is_some();
            for &(pid, epoch) in self.issued.get(&r.transactional_id).into_iter().flatten() {
                if fence_all || pid != r.producer_id || epoch < r.producer_epoch {
                    fenced.push((r.transactional_id.clone(), pid, epoch));
                }
            }
        }
        self.disk.extend(done.into_iter().map(|w| w.record));
        let out = self.c.durable(up_to);
        self.absorb(out, None, true)?;
        self.dead.extend(fenced);
        Ok(())
    }

    fn confirm_marker(&mut self, index: usize) -> Result<(), TestCaseError> {
        if self.outstanding.is_empty() {
            return Ok(());
        }
        let m = self.outstanding.remove(index % self.outstanding.len());
        let out = self.c.markers_written(m.id, self.now);
        self.absorb(out, Some(&m.transactional_id), false)
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let ident = |s: &Sim, client: usize| s.identities[client].unwrap_or((7, 0));
        match op.clone() {
            Op::Init {
                client,
                kip360,
                version,
            } => {
                let (pid, epoch) = match (kip360, self.identities[client]) {
                    (true, Some(id)) => id,
                    _ => (NO_PRODUCER_ID, NO_PRODUCER_EPOCH),
                };
                let req = InitProducerIdRequest {
                    transactional_id: txn_of(client),
                    transaction_timeout_ms: TIMEOUT_MS,
                    producer_id: pid,
                    producer_epoch: epoch,
                    api_version: version,
                };
                self.send(client, Sent::Init, Request::InitProducerId(req))
            }
            Op::Add { client, parts } => {
                let (producer_id, producer_epoch) = ident(self, client);
                let partitions: Vec<TopicPartition> = parts.into_iter().map(partition).collect();
                let req = AddPartitionsRequest {
                    transactional_id: txn_of(client),
                    producer_id,
                    producer_epoch,
                    partitions: partitions.clone(),
                    api_version: 3,
                };
                self.send(client, Sent::Add(partitions), Request::AddPartitions(req))
            }
            Op::Offsets { client, group } => {
                let (producer_id, producer_epoch) = ident(self, client);
                let group_id = format!("g{group}");
                let req = AddOffsetsRequest {
                    transactional_id: txn_of(client),
                    producer_id,
                    producer_epoch,
                    group_id: group_id.clone(),
                    api_version: 3,
                };
                self.send(client, Sent::Offsets(group_id), Request::AddOffsets(req))
            }
            Op::End { client, commit } => {
                let (producer_id, producer_epoch) = ident(self, client);
                let result = if commit {
                    TxnResult::Commit
                } else {
                    TxnResult::Abort
                };
                let req = EndTxnRequest {
                    transactional_id: txn_of(client),
                    producer_id,
                    producer_epoch,
                    result,
                    api_version: 3,
                };
                self.send(client, Sent::End(result), Request::EndTxn(req))
            }
            Op::Check { client, group } => {
                let (producer_id, producer_epoch) = ident(self, client);
                let check = TxnOffsetCommitCheck {
                    transactional_id: txn_of(client),
                    group_id: format!("g{group}"),
                    producer_id,
                    producer_epoch,
                    api_version: 3,
                };
                let key = (txn_of(client), producer_id, producer_epoch);
                if self.c.check_txn_offset_commit(&check).is_ok() {
                    prop_assert!(
                        !self.dead.contains(&key),
                        "fenced identity passed TxnOffsetCommit"
                    );
                }
                Ok(())
            }
            Op::Tick { advance } => {
                self.now += advance;
                let out = self.c.tick(self.now);
                self.note_fencing(&out);
                self.absorb(out, None, false)
            }
            Op::Durable { all } => {
                let n = if all {
                    self.unconfirmed.len()
                } else {
                    self.unconfirmed.len() / 2
                };
                match n.checked_sub(1).and_then(|i| self.unconfirmed.get(i)) {
                    Some(w) => {
                        let id = w.id;
                        self.confirm(id)
                    }
                    None => Ok(()),
                }
            }
            Op::Markers { index } => self.confirm_marker(index),
            Op::Restart => {
                let shut = self.c.shutdown();
                for (id, r) in &shut.responses {
                    prop_assert_eq!(r.error(), Some(TxnError::NotCoordinator));
                    prop_assert!(self.answered.insert(*id), "request {} answered twice", id);
                    self.in_flight.remove(id);
                }
                prop_assert!(
                    self.in_flight.is_empty(),
                    "requests lost at shutdown: {:?}",
                    self.in_flight
                );
                self.unconfirmed.clear();
                self.outstanding.clear();
                // Write ids start again in the new instance.
                self.fencing_writes.clear();
                let (mut c, out) =
                    TxnCoordinator::recover(self.config.clone(), self.disk.clone(), self.now);
                c.add_producer_ids(self.next_pid..self.next_pid + 10);
                self.next_pid += 10;
                self.c = c;
                self.absorb(out, None, false)
            }
        }
    }

    /// Confirms everything until nothing is outstanding.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..64 {
            if let Some(last) = self.unconfirmed.last().map(|w| w.id) {
                self.confirm(last)?;
            } else if !self.outstanding.is_empty() {
                self.confirm_marker(0)?;
            } else {
                return Ok(());
            }
        }
        prop_assert!(false, "drain did not settle");
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn coordinator_against_model(
        wait_for_markers in any::<bool>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut sim = Sim::new(wait_for_markers);
        for op in &ops {
            sim.apply(op)?;
            if let Err(e) = sim.c.check_invariants() {
                prop_assert!(false, "after {:?}: {}", op, e);
            }
        }
        sim.drain()?;
        prop_assert!(sim.in_flight.is_empty(), "unanswered: {:?}", sim.in_flight);
        prop_assert!(sim.c.pending_requests().is_empty());
        let (recovered, out) = TxnCoordinator::recover(sim.config.clone(), sim.disk.clone(), sim.now);
        prop_assert!(out.markers.is_empty(), "recovery found unfinished markers: {:?}", out.markers);
        prop_assert_eq!(recovered.records(), sim.c.records());
    }
}
