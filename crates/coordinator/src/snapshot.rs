//! Durable group metadata: what the broker stores so that a group survives a restart, the
//! updates the coordinator asks it to write, and the record format.
//!
//! # When the coordinator asks for a write
//!
//! Every [`Output`](crate::Output) carries `metadata`: [`MetadataUpdate`]s in the order they
//! must be applied. The broker must make them durable *before* it delivers the responses of the
//! same output, because the leader's SyncGroup that completes a rebalance is answered (and the
//! parked followers' SyncGroups with it) in that output: a member that holds an assignment then
//! always finds its generation after a crash. A group's record is written:
//!
//! - when a rebalance completes (the leader's assignment arrives; the group becomes Stable),
//! - when the group becomes Empty (the last member left, expired or was dropped),
//! - when a member is removed (left, session expired, fenced, dropped by a round) or a static
//!   member is replaced by a new member id; a group left mid-rebalance is stored with
//!   [`GroupSnapshot::rebalance_pending`], so after a restart it rebalances at once instead of
//!   pretending the removed member's partitions are still owned,
//!
//! and deleted when the coordinator forgets a group it had stored (DeleteGroups, offsets
//! expiry, an Empty group without offsets). DeleteGroups answers through
//! [`GroupCoordinator::take_metadata_updates`](crate::GroupCoordinator::take_metadata_updates).
//! Joins, heartbeats and commits never cause a write.
//!
//! # FORMAT (record version 1)
//!
//! The value stored under the group id. All integers are big-endian. A *string* is a u32 length
//! `n` then `n` bytes of UTF-8; *bytes* is a u32 length then the bytes; an *optional* field is
//! one byte (0 = absent, 1 = present) followed by the field when present.
//!
//! | bytes | field |
//! |---|---|
//! | 1 | record version: 1 |
//! | 1 | flags: bit 0 = rebalance pending; other bits must be 0 |
//! | 4 | generation id (i32) |
//! | opt string | protocol type |
//! | opt string | selected protocol name |
//! | opt string | leader member id |
//! | 4 | member count `m` (u32) |
//! | m × member | members, sorted by member id |
//!
//! Member:
//!
//! | bytes | field |
//! |---|---|
//! | string | member id |
//! | opt string | `group.instance.id` |
//! | string | client id |
//! | string | client host |
//! | 8 | rebalance timeout, ms (u64) |
//! | 8 | session timeout, ms (u64) |
//! | 4 | protocol count `p` (u32) |
//! | p × (string, bytes) | protocols in the member's preference order: name, metadata |
//! | opt bytes | assignment of the current generation |
//!
//! A record must be consumed exactly; anything else (unknown version, bad flag, truncation,
//! invalid UTF-8, trailing bytes) is a [`SnapshotDecodeError`]. Counts are never trusted for
//! allocation: elements are read one by one until the bytes run out.

use bytes::Bytes;

use crate::types::Protocol;

/// The record version [`GroupSnapshot::encode`] writes and [`GroupSnapshot::decode`] reads.
pub const SNAPSHOT_VERSION: u8 = 1;

const FLAG_REBALANCE_PENDING: u8 = 1;

/// One member's durable metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout (ms).
    pub rebalance_timeout_ms: u64,
    /// Session timeout (ms); the member's session restarts from the restore time.
    pub session_timeout_ms: u64,
    /// Supported protocols with their metadata, in preference order. All of them (not only the
    /// selected one), so a follower rejoining with unchanged metadata after a restart is
    /// recognised as unchanged and does not force a rebalance.
    pub protocols: Vec<Protocol>,
    /// Assignment of the current generation, if the leader's SyncGroup delivered one.
    pub assignment: Option<Bytes>,
}

/// A group's durable metadata, as Kafka keeps it in `__consumer_offsets`: enough to rebuild the
/// group after a restart so that live members keep their generation and assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// Group id (the record's key; not part of the encoded value).
    pub group_id: String,
    /// Current generation.
    pub generation_id: i32,
    /// Protocol type (e.g. `"consumer"`); `None` for a group that never had members.
    pub protocol_type: Option<String>,
    /// Selected protocol of the current generation.
    pub protocol_name: Option<String>,
    /// Leader member id; `None` exactly when there are no members.
    pub leader: Option<String>,
    /// Membership changed since the last completed rebalance (a member left or expired while
    /// Stable, or the group was mid-rebalance): restoring opens a join round at once.
    pub rebalance_pending: bool,
    /// Members, sorted by member id. Members that never completed a join round are left out:
    /// they have no generation to keep.
    pub members: Vec<MemberSnapshot>,
}

/// A write the broker must make durable before delivering the output that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataUpdate {
    /// Store (replace) this group's record.
    Store(GroupSnapshot),
    /// Delete this group's record, if any.
    Delete {
        /// Group id.
        group_id: String,
    },
}

impl MetadataUpdate {
    /// The group the update is about.
    pub fn group_id(&self) -> &str {
        match self {
            MetadataUpdate::Store(s) => &s.group_id,
            MetadataUpdate::Delete { group_id } => group_id,
        }
    }
}

/// A stored group record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotDecodeError {
    /// The record has a version this build does not read.
    #[error("unsupported group record version {found} (this build reads {SNAPSHOT_VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The record ends inside a field.
    #[error("truncated group record: {what} missing")]
    Truncated {
        /// The field that is cut off.
        what: &'static str,
    },
    /// A presence byte or the flags byte has a value the format does not define.
    #[error("bad {what} byte {value}")]
    BadFlag {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u8,
    },
    /// A string field is not UTF-8.
    #[error("{what} is not UTF-8")]
    NotUtf8 {
        /// The field.
        what: &'static str,
    },
    /// Bytes are left after the last member.
    #[error("{0} trailing bytes after the group record")]
    TrailingBytes(usize),
}

/// A decoded snapshot that cannot be restored because it breaks a group invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The group id is empty.
    #[error("group record with an empty group id")]
    EmptyGroupId,
    /// The leader is not a member, or members have no leader.
    #[error("group {group}: leader {leader:?} is not one of its members")]
    BadLeader {
        /// Group id.
        group: String,
        /// The recorded leader.
        leader: Option<String>,
    },
    /// Two members share a member id or a `group.instance.id`.
    #[error("group {group}: duplicate member or instance id {id}")]
    Duplicate {
        /// Group id.
        group: String,
        /// The repeated id.
        id: String,
    },
    /// A group with members lacks its protocol type, or a settled one its protocol name.
    #[error("group {group}: members without a protocol type or selected protocol")]
    MissingProtocol {
        /// Group id.
        group: String,
    },
    /// A settled (no rebalance pending) group has a member without an assignment.
    #[error("group {group}: member {member} has no assignment")]
    MissingAssignment {
        /// Group id.
        group: String,
        /// Member id.
        member: String,
    },
}

impl GroupSnapshot {
    /// The record value (see the [module docs](crate::snapshot) for the format).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(SNAPSHOT_VERSION);
        out.push(if self.rebalance_pending {
            FLAG_REBALANCE_PENDING
        } else {
            0
        });
        out.extend_from_slice(&self.generation_id.to_be_bytes());
        put_opt(&mut out, self.protocol_type.as_deref().map(str::as_bytes));
        put_opt(&mut out, self.protocol_name.as_deref().map(str::as_bytes));
        put_opt(&mut out, self.leader.as_deref().map(str::as_bytes));
        put_len(&mut out, self.members.len());
        for m in &self.members {
            put_bytes(&mut out, m.member_id.as_bytes());
            put_opt(&mut out, m.group_instance_id.as_deref().map(str::as_bytes));
            put_bytes(&mut out, m.client_id.as_bytes());
            put_bytes(&mut out, m.client_host.as_bytes());
            out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
            out.extend_from_slice(&m.session_timeout_ms.to_be_bytes());
            put_len(&mut out, m.protocols.len());
            for p in &m.protocols {
                put_bytes(&mut out, p.name.as_bytes());
                put_bytes(&mut out, &p.metadata);
            }
            put_opt(&mut out, m.assignment.as_deref());
        }
        out
    }

    /// Decodes the record stored under `group_id`.
    pub fn decode(group_id: &str, bytes: &[u8]) -> Result<GroupSnapshot, SnapshotDecodeError> {
        let mut r = Reader { bytes };
        let version = r.u8("record version")?;
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotDecodeError::UnsupportedVersion { found: version });
        }
        let flags = r.u8("flags")?;
        if flags & !FLAG_REBALANCE_PENDING != 0 {
            return Err(SnapshotDecodeError::BadFlag {
                what: "flags",
                value: flags,
            });
        }
        let generation_id = i32::from_be_bytes(r.array("generation")?);
        let protocol_type = r.opt_string("protocol type")?;
        let protocol_name = r.opt_string("protocol name")?;
        let leader = r.opt_string("leader")?;
        let count = r.u32("member count")?;
        let mut members = Vec::new();
        for _ in 0..count {
            let member_id = r.string("member id")?;
            let group_instance_id = r.opt_string("group.instance.id")?;
            let client_id = r.string("client id")?;
            let client_host = r.string("client host")?;
            let rebalance_timeout_ms = u64::from_be_bytes(r.array("rebalance timeout")?);
            let session_timeout_ms = u64::from_be_bytes(r.array("session timeout")?);
            let mut protocols = Vec::new();
            for _ in 0..r.u32("protocol count")? {
                let name = r.string("protocol name")?;
                let metadata = Bytes::copy_from_slice(r.bytes("protocol metadata")?);
                protocols.push(Protocol { name, metadata });
            }
            let assignment = r.opt_bytes("assignment")?.map(Bytes::copy_from_slice);
            members.push(MemberSnapshot {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                protocols,
                assignment,
            });
        }
        if !r.bytes.is_empty() {
            return Err(SnapshotDecodeError::TrailingBytes(r.bytes.len()));
        }
        Ok(GroupSnapshot {
            group_id: group_id.to_owned(),
            generation_id,
            protocol_type,
            protocol_name,
            leader,
            rebalance_pending: flags & FLAG_REBALANCE_PENDING != 0,
            members,
        })
    }

    /// Checks the invariants a restored group relies on.
    pub(crate) fn validate(&self) -> Result<(), RestoreError> {
        let group = || self.group_id.clone();
        if self.group_id.is_empty() {
            return Err(RestoreError::EmptyGroupId);
        }
        let leader_ok = match &self.leader {
            None => self.members.is_empty(),
            Some(l) => self.members.iter().any(|m| &m.member_id == l),
        };
        if !leader_ok {
            return Err(RestoreError::BadLeader {
                group: group(),
                leader: self.leader.clone(),
            });
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut instances = std::collections::BTreeSet::new();
        for m in &self.members {
            if !ids.insert(m.member_id.as_str()) {
                return Err(RestoreError::Duplicate {
                    group: group(),
                    id: m.member_id.clone(),
                });
            }
            if let Some(i) = &m.group_instance_id
                && !instances.insert(i.as_str())
            {
                return Err(RestoreError::Duplicate {
                    group: group(),
                    id: i.clone(),
                });
            }
        }
        if self.members.is_empty() {
            return Ok(());
        }
        let settled = !self.rebalance_pending;
        if self.protocol_type.is_none() || (settled && self.protocol_name.is_none()) {
            return Err(RestoreError::MissingProtocol { group: group() });
        }
        if settled && let Some(m) = self.members.iter().find(|m| m.assignment.is_none()) {
            return Err(RestoreError::MissingAssignment {
                group: group(),
                member: m.member_id.clone(),
            });
        }
        Ok(())
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Group ids, member ids and metadata come from bounded Kafka frames, far below 4 GiB; a
    // length that did not fit would be a bug worth stopping at rather than a silent truncation.
    let len = u32::try_from(len).expect("group record field longer than u32::MAX");
    out.extend_from_slice(&len.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SnapshotDecodeError> {
        if self.bytes.len() < n {
            return Err(SnapshotDecodeError::Truncated { what });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], SnapshotDecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, SnapshotDecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, SnapshotDecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], SnapshotDecodeError> {
        let len = usize::try_from(self.u32(what)?)
            .map_err(|_| SnapshotDecodeError::Truncated { what })?;
        self.take(len, what)
    }

    fn string(&mut self, what: &'static str) -> Result<String, SnapshotDecodeError> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| SnapshotDecodeError::NotUtf8 { what })
    }

    fn present(&mut self, what: &'static str) -> Result<bool, SnapshotDecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(SnapshotDecodeError::BadFlag { what, value }),
        }
    }

    fn opt_string(&mut self, what: &'static str) -> Result<Option<String>, SnapshotDecodeError> {
        if self.present(what)? {
            self.string(what).map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, SnapshotDecodeError> {
        if self.present(what)? {
            self.bytes(what).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member() -> impl Strategy<Value = MemberSnapshot> {
        (
            ".{0,8}",
            proptest::option::of(".{0,6}"),
            ".{0,6}",
            ".{0,6}",
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(
                (".{0,5}", proptest::collection::vec(any::<u8>(), 0..8)),
                0..3,
            ),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        )
            .prop_map(
                |(id, inst, cid, host, rb, s, protos, assignment)| MemberSnapshot {
                    member_id: id,
                    group_instance_id: inst,
                    client_id: cid,
                    client_host: host,
                    rebalance_timeout_ms: rb,
                    session_timeout_ms: s,
                    protocols: protos
                        .into_iter()
                        .map(|(name, m)| Protocol {
                            name,
                            metadata: Bytes::from(m),
                        })
                        .collect(),
                    assignment: assignment.map(Bytes::from),
                },
            )
    }

    fn snapshot() -> impl Strategy<Value = GroupSnapshot> {
        (
            any::<i32>(),
            proptest::option::of(".{0,6}"),
            proptest::option::of(".{0,6}"),
            proptest::option::of(".{0,6}"),
            any::<bool>(),
            proptest::collection::vec(member(), 0..4),
        )
            .prop_map(
                |(generation_id, pt, pn, leader, pending, members)| GroupSnapshot {
                    group_id: "g".to_owned(),
                    generation_id,
                    protocol_type: pt,
                    protocol_name: pn,
                    leader,
                    rebalance_pending: pending,
                    members,
                },
            )
    }

    proptest! {
        #[test]
        fn records_round_trip(s in snapshot()) {
            let bytes = s.encode();
            prop_assert_eq!(GroupSnapshot::decode("g", &bytes), Ok(s));
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = GroupSnapshot::decode("g", &bytes);
        }
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_an_error() {
        let s = GroupSnapshot {
            group_id: "g".into(),
            generation_id: 7,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: Some("m1".into()),
            rebalance_pending: false,
            members: vec![MemberSnapshot {
                member_id: "m1".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout_ms: 30_000,
                session_timeout_ms: 10_000,
                protocols: vec![Protocol {
                    name: "range".into(),
                    metadata: Bytes::from_static(b"sub"),
                }],
                assignment: Some(Bytes::from_static(b"a")),
            }],
        };
        let bytes = s.encode();
        for cut in 0..bytes.len() {
            assert!(
                GroupSnapshot::decode("g", &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            GroupSnapshot::decode("g", &long),
            Err(SnapshotDecodeError::TrailingBytes(1))
        );
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(
            GroupSnapshot::decode("g", &v2),
            Err(SnapshotDecodeError::UnsupportedVersion { found: 2 })
        );
        let mut flags = bytes;
        flags[1] = 0x80;
        assert!(matches!(
            GroupSnapshot::decode("g", &flags),
            Err(SnapshotDecodeError::BadFlag { what: "flags", .. })
        ));
    }

    /// The documented layout, byte by byte, for a small record: a change to the encoding that
    /// is not a version bump fails here.
    #[test]
    fn layout_matches_the_documented_format() {
        let s = GroupSnapshot {
            group_id: "g".into(),
            generation_id: 2,
            protocol_type: Some("c".into()),
            protocol_name: None,
            leader: Some("m".into()),
            rebalance_pending: true,
            members: vec![MemberSnapshot {
                member_id: "m".into(),
                group_instance_id: None,
                client_id: "i".into(),
                client_host: "h".into(),
                rebalance_timeout_ms: 3,
                session_timeout_ms: 4,
                protocols: vec![Protocol {
                    name: "r".into(),
                    metadata: Bytes::from_static(b"x"),
                }],
                assignment: None,
            }],
        };
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            1, 1, 0, 0, 0, 2,
            1, 0, 0, 0, 1, b'c',
            0,
            1, 0, 0, 0, 1, b'm',
            0, 0, 0, 1,
            0, 0, 0, 1, b'm',
            0,
            0, 0, 0, 1, b'i',
            0, 0, 0, 1, b'h',
            0, 0, 0, 0, 0, 0, 0, 3,
            0, 0, 0, 0, 0, 0, 0, 4,
            0, 0, 0, 1,
            0, 0, 0, 1, b'r', 0, 0, 0, 1, b'x',
            0,
        ];
        assert_eq!(s.encode(), want);
    }
}
