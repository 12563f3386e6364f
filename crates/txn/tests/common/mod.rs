//! A table-driven harness: scripts of `command args => expected` lines run against a coordinator
//! with a manual clock, an in-memory "disk" of durable records, and (by default) a broker that
//! makes every write durable and writes every marker as soon as it is asked to.
//!
//! Commands (`P` producer id, `E` epoch, `TP` like `a-0`, `[v=N]` request version):
//!
//! | command | does |
//! |---|---|
//! | `init T [timeout=N] [pid=P epoch=E] [v=N]` | InitProducerId |
//! | `add T P E TP... [v=N]` | AddPartitionsToTxn |
//! | `offsets T P E GROUP [v=N]` | AddOffsetsToTxn |
//! | `commit T P E [v=N]` / `abort T P E [v=N]` | EndTxn |
//! | `tick N` | advance the clock by N ms and tick |
//! | `manual` / `auto` | stop / resume confirming writes and markers by themselves |
//! | `durable [N]` | confirm writes up to N (default: all) |
//! | `markers` | confirm every outstanding marker write |
//! | `restart` | crash: a new coordinator recovered from the durable records only |
//! | `state T` | the transactional id's state |
//! | `txncheck T GROUP P E [v=N]` | TxnOffsetCommit check |
//! | `verify T P E TP...` | KIP-890 verification |
//! | `describe T` / `list [state=S] [pid=P] [duration=N]` | admin views |
//! | `pool FROM TO` | hand the coordinator producer ids |
//!
//! A step's rendering lists, joined by `; `: the step's own response (or `parked` / `held`),
//! responses to other requests as `#id ...`, then writes (`write State pid/epoch`, manual mode
//! only) and marker writes (`marker COMMIT pid/epoch [tps] groups=[..]`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use waterline_txn::*;

pub struct Harness {
    pub c: TxnCoordinator,
    pub now: u64,
    pub auto: bool,
    next_id: RequestId,
    pub answered: BTreeMap<RequestId, Response>,
    /// Writes handed out and not yet confirmed, in order.
    pub unconfirmed: Vec<Write>,
    /// The durable "disk".
    pub disk: Vec<TxnRecord>,
    /// Marker writes handed out and not yet confirmed.
    pub outstanding: Vec<MarkerWrite>,
    pub config: TxnConfig,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new(TxnConfig::default())
    }
}

impl Harness {
    pub fn new(config: TxnConfig) -> Harness {
        let (mut c, _) = TxnCoordinator::recover(config.clone(), Vec::new(), 0);
        c.add_producer_ids(1000..2000);
        Harness {
            c,
            now: 0,
            auto: true,
            next_id: 0,
            answered: BTreeMap::new(),
            unconfirmed: Vec::new(),
            disk: Vec::new(),
            outstanding: Vec::new(),
            config,
        }
    }

    /// Records an output; in auto mode keeps confirming until nothing is left to confirm.
    /// Returns the rendering of everything that happened, relative to request `me`.
    fn absorb(&mut self, out: Output, me: Option<RequestId>) -> Vec<String> {
        let mut lines = Vec::new();
        let mut answered_me = false;
        let mut queue = vec![out];
        while let Some(out) = queue.pop() {
            for (id, response) in &out.responses {
                let previous = self.answered.insert(*id, response.clone());
                assert!(previous.is_none(), "request {id} answered twice");
                if Some(*id) == me {
                    answered_me = true;
                    lines.push(render_response(response));
                } else {
                    lines.push(format!("#{id} {}", render_response(response)));
                }
            }
            for w in &out.writes {
                if !self.auto {
                    lines.push(format!(
                        "write {} {}/{}",
                        w.record.state, w.record.producer_id, w.record.producer_epoch
                    ));
                }
            }
            self.unconfirmed.extend(out.writes.iter().cloned());
            for m in &out.markers {
                lines.push(render_marker(m));
            }
            self.outstanding.extend(out.markers.iter().cloned());
            if self.auto {
                if let Some(last) = self.unconfirmed.last().map(|w| w.id) {
                    let o = self.confirm(last);
                    queue.push(o);
                } else if !self.outstanding.is_empty() {
                    let m = self.outstanding.remove(0);
                    let o = self.c.markers_written(m.id, self.now);
                    queue.push(o);
                }
            }
        }
        if let Some(me) = me
            && !answered_me
        {
            let parked = self
                .c
                .transaction_views()
                .iter()
                .any(|v| v.parked.contains(&me));
            lines.insert(0, if parked { "parked" } else { "held" }.to_owned());
        }
        lines
    }

    fn confirm(&mut self, up_to: WriteId) -> Output {
        let (done, rest): (Vec<Write>, Vec<Write>) =
            self.unconfirmed.drain(..).partition(|w| w.id <= up_to);
        self.unconfirmed = rest;
        self.disk.extend(done.into_iter().map(|w| w.record));
        self.c.durable(up_to)
    }

    pub fn request(&mut self, request: Request) -> (RequestId, Vec<String>) {
        self.next_id += 1;
        let id = self.next_id;
        let out = self.c.handle(id, request, self.now);
        let lines = self.absorb(out, Some(id));
        (id, lines)
    }

    /// Runs one script line and returns its rendering.
    pub fn step(&mut self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (cmd, args) = words.split_first().expect("empty step");
        let (kv, pos): (Vec<&str>, Vec<&str>) = args.iter().partition(|a| a.contains('='));
        let opt = |key: &str| -> Option<i64> {
            kv.iter()
                .find_map(|a| a.strip_prefix(&format!("{key}=")))
                .map(|v| v.parse().expect("number"))
        };
        let opt_str = |key: &str| -> Option<String> {
            kv.iter()
                .find_map(|a| a.strip_prefix(&format!("{key}=")))
                .map(str::to_owned)
        };
        let num = |i: usize| -> i64 { pos[i].parse().expect("number") };
        let version = opt("v").unwrap_or(3) as i16;
        let lines = match *cmd {
            "init" => {
                let req = InitProducerIdRequest {
                    transactional_id: pos[0].to_owned(),
                    transaction_timeout_ms: opt("timeout").unwrap_or(60_000) as i32,
                    producer_id: opt("pid").unwrap_or(-1),
                    producer_epoch: opt("epoch").unwrap_or(-1) as i16,
                    api_version: opt("v").unwrap_or(4) as i16,
                };
                self.request(Request::InitProducerId(req)).1
            }
            "add" => {
                let req = AddPartitionsRequest {
                    transactional_id: pos[0].to_owned(),
                    producer_id: num(1),
                    producer_epoch: num(2) as i16,
                    partitions: pos[3..].iter().map(|s| tp(s)).collect(),
                    api_version: version,
                };
                self.request(Request::AddPartitions(req)).1
            }
            "offsets" => {
                let req = AddOffsetsRequest {
                    transactional_id: pos[0].to_owned(),
                    producer_id: num(1),
                    producer_epoch: num(2) as i16,
                    group_id: pos[3].to_owned(),
                    api_version: version,
                };
                self.request(Request::AddOffsets(req)).1
            }
            "commit" | "abort" => {
                let req = EndTxnRequest {
                    transactional_id: pos[0].to_owned(),
                    producer_id: num(1),
                    producer_epoch: num(2) as i16,
                    result: if *cmd == "commit" {
                        TxnResult::Commit
                    } else {
                        TxnResult::Abort
                    },
                    api_version: version,
                };
                self.request(Request::EndTxn(req)).1
            }
            "tick" => {
                self.now += num(0) as u64;
                let out = self.c.tick(self.now);
                self.absorb(out, None)
            }
            "manual" => {
                self.auto = false;
                Vec::new()
            }
            "auto" => {
                self.auto = true;
                let out = Output::default();
                self.absorb(out, None)
            }
            "durable" => {
                let up_to = pos
                    .first()
                    .map(|s| s.parse().expect("write id"))
                    .or(self.unconfirmed.last().map(|w| w.id))
                    .unwrap_or(0);
                let out = self.confirm(up_to);
                self.absorb(out, None)
            }
            "markers" => {
                let mut lines = Vec::new();
                for m in std::mem::take(&mut self.outstanding) {
                    let out = self.c.markers_written(m.id, self.now);
                    lines.extend(self.absorb(out, None));
                }
                lines
            }
            "restart" => {
                // Unconfirmed writes and markers are lost with the process.
                self.unconfirmed.clear();
                self.outstanding.clear();
                let (mut c, out) =
                    TxnCoordinator::recover(self.config.clone(), self.disk.clone(), self.now);
                c.add_producer_ids(5000..6000);
                let shut = self.c.shutdown();
                self.c = c;
                let mut lines: Vec<String> = shut
                    .responses
                    .iter()
                    .map(|(id, r)| format!("#{id} {}", render_response(r)))
                    .collect();
                for (id, r) in shut.responses {
                    self.answered.insert(id, r);
                }
                lines.extend(self.absorb(out, None));
                lines
            }
            "state" => vec![match self.c.transaction(pos[0]) {
                None => "none".to_owned(),
                Some(v) => render_record(&v.record),
            }],
            "txncheck" => {
                let check = TxnOffsetCommitCheck {
                    transactional_id: pos[0].to_owned(),
                    group_id: pos[1].to_owned(),
                    producer_id: num(2),
                    producer_epoch: num(3) as i16,
                    api_version: version,
                };
                vec![match self.c.check_txn_offset_commit(&check) {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => e.name().to_owned(),
                }]
            }
            "verify" => {
                let parts: Vec<TopicPartition> = pos[3..].iter().map(|s| tp(s)).collect();
                self.c
                    .verify_partitions(pos[0], num(1), num(2) as i16, &parts)
                    .into_iter()
                    .map(|(p, e)| format!("{p}:{}", e.map_or("ok", TxnError::name)))
                    .collect()
            }
            "describe" => self
                .c
                .describe_transactions(&[pos[0]])
                .into_iter()
                .map(|d| match d.error {
                    Some(e) => e.name().to_owned(),
                    None => format!(
                        "{} {}/{} timeout={} start={} [{}]",
                        d.state,
                        d.producer_id,
                        d.producer_epoch,
                        d.transaction_timeout_ms,
                        d.transaction_start_ms,
                        join(d.partitions.iter())
                    ),
                })
                .collect(),
            "list" => {
                let filter = ListTransactionsFilter {
                    states: opt_str("state").into_iter().collect(),
                    producer_ids: opt("pid").into_iter().collect(),
                    min_duration_ms: opt("duration"),
                };
                let r = self.c.list_transactions(&filter, self.now);
                let mut lines: Vec<String> = r
                    .transactions
                    .iter()
                    .map(|t| format!("{}:{}:{}", t.transactional_id, t.producer_id, t.state))
                    .collect();
                if let Some(e) = r.error {
                    lines.push(e.name().to_owned());
                }
                for u in r.unknown_state_filters {
                    lines.push(format!("unknown={u}"));
                }
                if lines.is_empty() {
                    lines.push("empty".to_owned());
                }
                lines
            }
            "pool" => {
                self.c.add_producer_ids(num(0)..num(1));
                Vec::new()
            }
            other => panic!("unknown command {other}"),
        };
        lines.join("; ")
    }
}

/// Runs a script: each non-empty, non-comment line is `step => expected` (or just `step`, which
/// must render nothing... or anything, when it ends with `=> *`).
pub fn check(script: &str) {
    check_with(Harness::default(), script);
}

pub fn check_with(mut h: Harness, script: &str) {
    let mut failures = Vec::new();
    for (n, raw) in script.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (step, expected) = match line.split_once("=>") {
            Some((s, e)) => (s.trim(), Some(e.trim())),
            None => (line, None),
        };
        let got = h.step(step);
        match expected {
            Some("*") => {}
            Some(e) if e == got => {}
            None if got.is_empty() => {}
            _ => failures.push(format!(
                "line {}: {step}\n    expected: {}\n    got:      {got}",
                n + 1,
                expected.unwrap_or("")
            )),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

pub fn tp(s: &str) -> TopicPartition {
    let (topic, p) = s.rsplit_once('-').expect("topic-partition");
    TopicPartition::new(topic, p.parse().expect("partition"))
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

pub fn render_response(r: &Response) -> String {
    match r {
        Response::InitProducerId(r) => match r.error {
            Some(e) => e.name().to_owned(),
            None => format!("ok {}/{}", r.producer_id, r.producer_epoch),
        },
        other => other.error().map_or("ok", TxnError::name).to_owned(),
    }
}

pub fn render_marker(m: &MarkerWrite) -> String {
    let kind = match m.result {
        TxnResult::Commit => "COMMIT",
        TxnResult::Abort => "ABORT",
    };
    let groups = if m.groups.is_empty() {
        String::new()
    } else {
        format!(" groups=[{}]", m.groups.join(","))
    };
    format!(
        "marker {kind} {}/{} [{}]{groups}",
        m.producer_id,
        m.producer_epoch,
        join(m.partitions.iter())
    )
}

pub fn render_record(r: &TxnRecord) -> String {
    let mut s = format!(
        "{} {}/{} last={}",
        r.state, r.producer_id, r.producer_epoch, r.last_producer_epoch
    );
    if !r.partitions.is_empty() {
        s.push_str(&format!(" [{}]", join(r.partitions.iter())));
    }
    if !r.groups.is_empty() {
        s.push_str(&format!(" groups=[{}]", r.groups.join(",")));
    }
    s
}

/// Every parked request id, for the harness's `parked`/`held` rendering.
pub trait Views {
    fn transaction_views(&self) -> Vec<TxnView>;
}

impl Views for TxnCoordinator {
    fn transaction_views(&self) -> Vec<TxnView> {
        let ids: BTreeSet<String> = self
            .records()
            .into_iter()
            .map(|r| r.transactional_id)
            .collect();
        ids.iter().filter_map(|id| self.transaction(id)).collect()
    }
}
