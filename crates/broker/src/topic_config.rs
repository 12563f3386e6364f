//! Topic configuration under Kafka's names: one table that CreateTopics, AlterConfigs,
//! IncrementalAlterConfigs, DescribeConfigs and start-up all read, so a key is validated,
//! applied and reported the same way everywhere.
//!
//! Every key Kafka defines for topics that clients and frameworks set routinely is known here.
//! Each is either *honoured* (it changes what the broker does) or *accepted*: Kafka accepts it,
//! but on a single node it has nothing to do (e.g. `min.insync.replicas`: there is one replica,
//! and `acks=all` already waits for the fsync), so it is stored and reported, never refused.
//! Unknown keys and invalid values are refused with a message naming the key and the allowed
//! values.

use std::collections::BTreeMap;

/// Kafka's ConfigType codes (DescribeConfigs v3+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    /// `true` / `false`.
    Boolean,
    /// Free text or one of a set of words.
    String,
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    Long,
    /// Floating point.
    Double,
    /// Comma-separated list.
    List,
}

impl ConfigType {
    /// The wire code.
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// Whether a key changes what the broker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Applied to the topic's partitions (live when altered).
    Honoured,
    /// Stored and reported; explains why it has no effect on one node.
    Accepted(&'static str),
}

/// One topic configuration key.
#[derive(Debug)]
pub struct TopicKey {
    /// Kafka's name.
    pub name: &'static str,
    /// Its type.
    pub ty: ConfigType,
    /// The broker setting that supplies the default when the topic has no override (Kafka's
    /// synonym, e.g. `log.retention.ms` for `retention.ms`).
    pub broker_synonym: &'static str,
    /// Kafka's built-in default.
    pub default: &'static str,
    /// What the key does.
    pub doc: &'static str,
    /// Honoured or only accepted.
    pub effect: Effect,
    /// Checks a value; the error names the allowed values.
    check: fn(&str) -> Result<(), String>,
}

impl TopicKey {
    /// Checks `value` for this key; the error message names the key and what is allowed.
    pub fn validate(&self, value: &str) -> Result<(), String> {
        (self.check)(value).map_err(|allowed| format!("{}={value}: {allowed}", self.name))
    }
}

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v| match v.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        _ => Err(format!("expected an integer >= {min}")),
    }
}

fn int_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v| match v.trim().parse::<i64>() {
        Ok(n) if n >= min && n <= i64::from(i32::MAX) => Ok(()),
        _ => Err(format!("expected an integer between {min} and 2147483647")),
    }
}

fn boolean(v: &str) -> Result<(), String> {
    match v.trim() {
        "true" | "false" => Ok(()),
        _ => Err("expected true or false".into()),
    }
}

fn any(_: &str) -> Result<(), String> {
    Ok(())
}

fn cleanup_policy(v: &str) -> Result<(), String> {
    parse_cleanup_policy(v)
        .map(drop)
        .ok_or_else(|| "allowed values are delete, compact, or compact,delete".into())
}

fn timestamp_type(v: &str) -> Result<(), String> {
    match v {
        "CreateTime" | "LogAppendTime" => Ok(()),
        _ => Err("allowed values are CreateTime and LogAppendTime".into()),
    }
}

fn compression(v: &str) -> Result<(), String> {
    match v {
        "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
        _ => Err("allowed values are producer, uncompressed, gzip, snappy, lz4, zstd".into()),
    }
}

fn ratio(v: &str) -> Result<(), String> {
    match v.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
        _ => Err("expected a number between 0 and 1".into()),
    }
}

/// `(delete, compact)` of a `cleanup.policy` value: `delete`, `compact` or both, comma
/// separated in any order (an empty list means neither, as Kafka allows).
pub fn parse_cleanup_policy(v: &str) -> Option<(bool, bool)> {
    let (mut delete, mut compact) = (false, false);
    for word in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word {
            "delete" => delete = true,
            "compact" => compact = true,
            _ => return None,
        }
    }
    Some((delete, compact))
}

macro_rules! key {
    ($name:literal, $ty:ident, $syn:literal, $default:literal, $effect:expr, $check:expr, $doc:literal) => {
        TopicKey {
            name: $name,
            ty: ConfigType::$ty,
            broker_synonym: $syn,
            default: $default,
            doc: $doc,
            effect: $effect,
            check: $check,
        }
    };
}

const ONE_NODE: &str = "one node, one replica";
const FSYNC_POLICY: &str = "fsync is broker-wide (`fsync` setting)";
const NOT_ENFORCED: &str = "accepted, not enforced";

/// Every known topic key, in name order.
pub static TOPIC_KEYS: &[TopicKey] = &[
    key!(
        "cleanup.policy",
        List,
        "log.cleanup.policy",
        "delete",
        Effect::Honoured,
        cleanup_policy,
        "delete: old segments go by retention; compact: keep the latest record per key; or both."
    ),
    key!(
        "compression.type",
        String,
        "compression.type",
        "producer",
        Effect::Honoured,
        compression,
        "Batches are stored as the producer compressed them."
    ),
    key!(
        "delete.retention.ms",
        Long,
        "log.cleaner.delete.retention.ms",
        "86400000",
        Effect::Honoured,
        |v| long_at_least(0)(v),
        "How long tombstones stay readable after compaction."
    ),
    key!(
        "file.delete.delay.ms",
        Long,
        "log.segment.delete.delay.ms",
        "60000",
        Effect::Accepted("segments are deleted at once"),
        |v| long_at_least(0)(v),
        "Delay before a deleted segment's files are removed."
    ),
    key!(
        "flush.messages",
        Long,
        "log.flush.interval.messages",
        "9223372036854775807",
        Effect::Accepted(FSYNC_POLICY),
        |v| long_at_least(1)(v),
        "Fsync after this many messages."
    ),
    key!(
        "flush.ms",
        Long,
        "log.flush.interval.ms",
        "9223372036854775807",
        Effect::Accepted(FSYNC_POLICY),
        |v| long_at_least(0)(v),
        "Fsync at least this often."
    ),
    key!(
        "follower.replication.throttled.replicas",
        List,
        "follower.replication.throttled.replicas",
        "",
        Effect::Accepted(ONE_NODE),
        any,
        "Replicas throttled on followers."
    ),
    key!(
        "index.interval.bytes",
        Int,
        "log.index.interval.bytes",
        "4096",
        Effect::Honoured,
        |v| int_at_least(0)(v),
        "Bytes of batches between sparse offset index entries."
    ),
    key!(
        "leader.replication.throttled.replicas",
        List,
        "leader.replication.throttled.replicas",
        "",
        Effect::Accepted(ONE_NODE),
        any,
        "Replicas throttled on the leader."
    ),
    key!(
        "max.compaction.lag.ms",
        Long,
        "log.cleaner.max.compaction.lag.ms",
        "9223372036854775807",
        Effect::Honoured,
        |v| long_at_least(1)(v),
        "Longest a record stays uncompacted."
    ),
    key!(
        "max.message.bytes",
        Int,
        "message.max.bytes",
        "1048588",
        Effect::Honoured,
        |v| int_at_least(128)(v),
        "Largest record batch accepted."
    ),
    key!(
        "message.downconversion.enable",
        Boolean,
        "log.message.downconversion.enable",
        "true",
        Effect::Accepted("Fetch v4+ only; nothing is down-converted"),
        boolean,
        "Down-convert batches for old consumers."
    ),
    key!(
        "message.format.version",
        String,
        "log.message.format.version",
        "3.0-IV1",
        Effect::Accepted("deprecated and ignored, as in Kafka 3.x"),
        any,
        "Deprecated: the record format is always v2."
    ),
    key!(
        "message.timestamp.after.max.ms",
        Long,
        "log.message.timestamp.after.max.ms",
        "9223372036854775807",
        Effect::Accepted(NOT_ENFORCED),
        |v| long_at_least(0)(v),
        "Largest allowed record timestamp ahead of the broker's clock."
    ),
    key!(
        "message.timestamp.before.max.ms",
        Long,
        "log.message.timestamp.before.max.ms",
        "9223372036854775807",
        Effect::Accepted(NOT_ENFORCED),
        |v| long_at_least(0)(v),
        "Largest allowed record timestamp behind the broker's clock."
    ),
    key!(
        "message.timestamp.difference.max.ms",
        Long,
        "log.message.timestamp.difference.max.ms",
        "9223372036854775807",
        Effect::Accepted(NOT_ENFORCED),
        |v| long_at_least(0)(v),
        "Deprecated: largest allowed record timestamp difference."
    ),
    key!(
        "message.timestamp.type",
        String,
        "log.message.timestamp.type",
        "CreateTime",
        Effect::Honoured,
        timestamp_type,
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches on append."
    ),
    key!(
        "min.cleanable.dirty.ratio",
        Double,
        "log.cleaner.min.cleanable.ratio",
        "0.5",
        Effect::Honoured,
        ratio,
        "Share of uncompacted bytes that makes a partition due for cleaning."
    ),
    key!(
        "min.compaction.lag.ms",
        Long,
        "log.cleaner.min.compaction.lag.ms",
        "0",
        Effect::Honoured,
        |v| long_at_least(0)(v),
        "Shortest time a record stays uncompacted."
    ),
    key!(
        "min.insync.replicas",
        Int,
        "min.insync.replicas",
        "1",
        Effect::Accepted("one node: the only replica is always in sync"),
        |v| int_at_least(1)(v),
        "Replicas that must acknowledge an acks=all write."
    ),
    key!(
        "preallocate",
        Boolean,
        "log.preallocate",
        "false",
        Effect::Accepted("segments grow as written"),
        boolean,
        "Preallocate segment files."
    ),
    key!(
        "retention.bytes",
        Long,
        "log.retention.bytes",
        "-1",
        Effect::Honoured,
        |v| long_at_least(-1)(v),
        "Delete old segments while a partition is larger; -1: no limit."
    ),
    key!(
        "retention.ms",
        Long,
        "log.retention.ms",
        "604800000",
        Effect::Honoured,
        |v| long_at_least(-1)(v),
        "Delete segments older than this; -1 keeps them."
    ),
    key!(
        "segment.bytes",
        Int,
        "log.segment.bytes",
        "1073741824",
        Effect::Honoured,
        |v| int_at_least(1024)(v),
        "Roll the active segment at this size."
    ),
    key!(
        "segment.index.bytes",
        Int,
        "log.index.size.max.bytes",
        "10485760",
        Effect::Accepted("indexes grow as needed"),
        |v| int_at_least(4)(v),
        "Largest offset index file."
    ),
    key!(
        "segment.jitter.ms",
        Long,
        "log.roll.jitter.ms",
        "0",
        Effect::Accepted(NOT_ENFORCED),
        |v| long_at_least(0)(v),
        "Random jitter subtracted from segment.ms."
    ),
    key!(
        "segment.ms",
        Long,
        "log.roll.ms",
        "604800000",
        Effect::Honoured,
        |v| long_at_least(1)(v),
        "Roll the active segment at this age."
    ),
    key!(
        "unclean.leader.election.enable",
        Boolean,
        "unclean.leader.election.enable",
        "false",
        Effect::Accepted(ONE_NODE),
        boolean,
        "Let an out-of-sync replica become leader."
    ),
];

/// The key named `name`.
pub fn key(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|k| k.name == name)
}

/// The topic key whose broker-wide default is the broker setting `name` (e.g.
/// `log.retention.ms`), if that setting can be changed dynamically: the defaults of honoured
/// topic keys can.
pub fn dynamic_broker_key(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS
        .iter()
        .find(|k| k.broker_synonym == name && k.effect == Effect::Honoured)
}

/// Which names a set of settings uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A topic's overrides (`retention.ms`).
    Topic,
    /// Dynamic broker-wide defaults (`log.retention.ms`).
    Broker,
}

impl Scope {
    fn lookup(self, name: &str) -> Option<&'static TopicKey> {
        match self {
            Scope::Topic => key(name),
            Scope::Broker => dynamic_broker_key(name),
        }
    }

    fn unknown(self, name: &str) -> String {
        match self {
            Scope::Topic => format!("unknown topic config `{name}`"),
            Scope::Broker => format!(
                "`{name}` cannot be changed dynamically (dynamic broker settings: {})",
                TOPIC_KEYS
                    .iter()
                    .filter(|k| k.effect == Effect::Honoured)
                    .map(|k| k.broker_synonym)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Checks a whole set of topic overrides: every key known, every value valid.
pub fn validate(overrides: &BTreeMap<String, String>) -> Result<(), String> {
    validate_in(Scope::Topic, overrides)
}

/// Checks a set of settings named as `scope` names them.
pub fn validate_in(scope: Scope, settings: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in settings {
        match scope.lookup(k) {
            Some(key) => key.validate(v).map_err(|m| m.replacen(key.name, k, 1))?,
            None => return Err(scope.unknown(k)),
        }
    }
    Ok(())
}

/// What an IncrementalAlterConfigs operation does to one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlterOp {
    /// Set the value.
    Set,
    /// Remove the override (back to the default).
    Delete,
    /// Add list items (LIST keys only).
    Append,
    /// Remove list items (LIST keys only).
    Subtract,
}

impl AlterOp {
    /// From the wire code.
    pub fn from_code(code: i8) -> Option<AlterOp> {
        Some(match code {
            0 => AlterOp::Set,
            1 => AlterOp::Delete,
            2 => AlterOp::Append,
            3 => AlterOp::Subtract,
            _ => return None,
        })
    }
}

/// Applies incremental operations to `current` (a topic's overrides, or the dynamic broker
/// defaults, as `scope` says), checking each key and the result. `effective` gives the value a
/// key has now (set or default), which APPEND and SUBTRACT start from.
pub fn apply_incremental(
    scope: Scope,
    current: &BTreeMap<String, String>,
    ops: &[(String, AlterOp, Option<String>)],
    effective: impl Fn(&str) -> String,
) -> Result<BTreeMap<String, String>, String> {
    let mut next = current.clone();
    for (name, op, value) in ops {
        let Some(k) = scope.lookup(name) else {
            return Err(scope.unknown(name));
        };
        let list_items = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match op {
            AlterOp::Set => {
                let v = value
                    .clone()
                    .ok_or_else(|| format!("{name}: SET needs a value"))?;
                next.insert(name.clone(), v);
            }
            AlterOp::Delete => {
                next.remove(name);
            }
            AlterOp::Append | AlterOp::Subtract => {
                if k.ty != ConfigType::List {
                    return Err(format!(
                        "{name}: APPEND and SUBTRACT apply only to list configs"
                    ));
                }
                let current = next.get(name).cloned().unwrap_or_else(|| effective(name));
                let mut items = list_items(&current);
                let given = list_items(value.as_deref().unwrap_or(""));
                if *op == AlterOp::Append {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                next.insert(name.clone(), items.join(","));
            }
        }
    }
    validate_in(scope, &next)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_are_sorted_unique_and_their_defaults_valid() {
        for w in TOPIC_KEYS.windows(2) {
            assert!(w[0].name < w[1].name, "{} then {}", w[0].name, w[1].name);
        }
        for k in TOPIC_KEYS {
            assert!(k.validate(k.default).is_ok(), "{}", k.name);
        }
    }

    #[test]
    fn values_are_checked_with_messages_naming_key_and_allowed_values() {
        let cases = [
            ("cleanup.policy", "compact", true),
            ("cleanup.policy", "delete,compact", true),
            ("cleanup.policy", " compact , delete ", true),
            ("cleanup.policy", "", true),
            ("cleanup.policy", "shred", false),
            ("message.timestamp.type", "LogAppendTime", true),
            ("message.timestamp.type", "logappendtime", false),
            ("min.cleanable.dirty.ratio", "0.1", true),
            ("min.cleanable.dirty.ratio", "1.5", false),
            ("retention.ms", "-1", true),
            ("retention.ms", "-2", false),
            ("segment.bytes", "100", false),
            ("min.insync.replicas", "2", true),
            ("message.format.version", "2.8", true),
            ("compression.type", "gzip", true),
            ("compression.type", "brotli", false),
            ("preallocate", "yes", false),
        ];
        for (k, v, ok) in cases {
            let r = validate(&map(&[(k, v)]));
            assert_eq!(r.is_ok(), ok, "{k}={v}: {r:?}");
            if let Err(m) = r {
                assert!(m.starts_with(&format!("{k}={v}: ")), "{m}");
            }
        }
        let unknown = validate(&map(&[("retention.minutes", "5")])).unwrap_err();
        assert!(unknown.contains("retention.minutes"), "{unknown}");
        let msg = validate(&map(&[("cleanup.policy", "shred")])).unwrap_err();
        assert!(msg.contains("compact,delete"), "{msg}");
    }

    #[test]
    fn incremental_set_delete_append_subtract() {
        let current = map(&[("retention.ms", "1000"), ("segment.ms", "5000")]);
        let eff = |k: &str| key(k).unwrap().default.to_string();
        let ops = vec![
            ("retention.ms".to_string(), AlterOp::Delete, None),
            (
                "cleanup.policy".to_string(),
                AlterOp::Append,
                Some("compact".to_string()),
            ),
            (
                "segment.ms".to_string(),
                AlterOp::Set,
                Some("60000".to_string()),
            ),
        ];
        let next = apply_incremental(Scope::Topic, &current, &ops, eff).unwrap();
        assert_eq!(
            next,
            map(&[
                ("cleanup.policy", "delete,compact"),
                ("segment.ms", "60000")
            ])
        );
        let ops = vec![(
            "cleanup.policy".to_string(),
            AlterOp::Subtract,
            Some("delete".to_string()),
        )];
        let next = apply_incremental(Scope::Topic, &next, &ops, eff).unwrap();
        assert_eq!(next["cleanup.policy"], "compact");
        let bad = vec![(
            "retention.ms".to_string(),
            AlterOp::Append,
            Some("5".to_string()),
        )];
        assert!(apply_incremental(Scope::Topic, &next, &bad, eff).is_err());
        let invalid = vec![(
            "segment.ms".to_string(),
            AlterOp::Set,
            Some("0".to_string()),
        )];
        assert!(apply_incremental(Scope::Topic, &next, &invalid, eff).is_err());
    }

    #[test]
    fn broker_scope_takes_the_dynamic_defaults_of_honoured_keys() {
        let ok = map(&[
            ("log.retention.ms", "1000"),
            ("log.cleanup.policy", "compact"),
        ]);
        assert!(validate_in(Scope::Broker, &ok).is_ok());
        let bad = validate_in(Scope::Broker, &map(&[("log.retention.ms", "-5")])).unwrap_err();
        assert!(bad.starts_with("log.retention.ms=-5: "), "{bad}");
        // Accepted-only and unknown settings are not dynamic.
        for k in ["min.insync.replicas", "retention.ms", "num.partitions"] {
            let e = validate_in(Scope::Broker, &map(&[(k, "1")])).unwrap_err();
            assert!(e.contains("cannot be changed dynamically"), "{e}");
        }
        let eff = |k: &str| dynamic_broker_key(k).unwrap().default.to_string();
        let ops = vec![(
            "log.cleanup.policy".to_string(),
            AlterOp::Append,
            Some("compact".to_string()),
        )];
        let next = apply_incremental(Scope::Broker, &BTreeMap::new(), &ops, eff).unwrap();
        assert_eq!(next["log.cleanup.policy"], "delete,compact");
    }
}
