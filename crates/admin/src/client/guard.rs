//! Pre-decode check of response bodies.
//!
//! kafka-protocol 0.18 allocates `Vec::with_capacity(count)` from element counts read off the
//! wire before reading the elements, so a small malformed response claiming 2^31 elements would
//! abort the process. [`check`] walks a body with the message's wire layout (generated into
//! `guard_schema.rs` by `tools/gen_response_schema.py`) first.
//!
//! Invariant: when [`check`] accepts a body, every array count in it is at most the number of
//! bytes left where the count was read (each element takes at least one byte), and the body
//! holds at most [`MAX_ELEMENTS`] elements in all, so decoding allocates in proportion to the
//! frame, which the connection already bounds.

use super::guard_schema::LAYOUTS;

/// Upper bound on array elements in one response, all arrays and levels together.
pub const MAX_ELEMENTS: usize = 1 << 22;
/// Nesting bound; the layouts are a few levels deep.
const MAX_DEPTH: usize = 16;
/// Pseudo API key of the consumer protocol assignment layout.
pub const CONSUMER_ASSIGNMENT: i16 = -1;

/// Wire type of a field. The generator maps every kafka-protocol wire type, so some variants
/// do not occur in the current table.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)]
pub(crate) enum Kind {
    I8,
    I16,
    I32,
    I64,
    U16,
    F64,
    Bool,
    Uuid,
    UVarint,
    /// INT16 length, -1 = null.
    Str,
    /// UNSIGNED_VARINT length + 1, 0 = null.
    CStr,
    /// INT32 length, -1 = null.
    Bytes,
    /// UNSIGNED_VARINT length + 1, 0 = null.
    CBytes,
    /// INT32 count, -1 = null.
    Array(Elem),
    /// UNSIGNED_VARINT count + 1, 0 = null.
    CArray(Elem),
    /// A nested struct, by layout name.
    Struct(&'static str),
    /// INT8 presence marker then the struct.
    OptionStruct(&'static str),
}

/// Element type of an array.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Elem {
    Prim(&'static Kind),
    Struct(&'static str),
}

/// A field present in versions `min..=max`; `tag` is set for known tagged fields.
#[derive(Debug)]
pub(crate) struct Field {
    pub tag: Option<u32>,
    pub min: i16,
    pub max: i16,
    pub kind: Kind,
}

/// A struct's layout; `flex` is its first flexible version (with a tagged-field section).
#[derive(Debug)]
pub(crate) struct Layout {
    pub name: &'static str,
    pub flex: Option<i16>,
    pub fields: &'static [Field],
}

/// Checks `body` (after the response header) of API `api_key` at `version`; returns why it
/// was refused.
pub fn check(api_key: i16, version: i16, body: &[u8]) -> Result<(), String> {
    let Some((_, layouts)) = LAYOUTS.iter().find(|(k, _)| *k == api_key) else {
        return Err(format!("no response layout for API key {api_key}"));
    };
    let mut walker = Walker {
        rest: body,
        layouts,
        version,
        elements: 0,
    };
    walker.layout(&layouts[0], 0)
}

struct Walker<'a> {
    rest: &'a [u8],
    layouts: &'static [Layout],
    version: i16,
    elements: usize,
}

impl Walker<'_> {
    fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.rest.len() {
            return Err(format!("needs {n} bytes, {} left", self.rest.len()));
        }
        self.rest = &self.rest[n..];
        Ok(())
    }

    fn signed(&mut self, width: usize) -> Result<i64, String> {
        if width > self.rest.len() {
            return Err(format!("needs {width} bytes, {} left", self.rest.len()));
        }
        let (head, tail) = self.rest.split_at(width);
        self.rest = tail;
        // Big-endian, sign-extended from the top bit.
        let init: i64 = if head[0] & 0x80 != 0 { -1 } else { 0 };
        Ok(head.iter().fold(init, |acc, b| (acc << 8) | i64::from(*b)))
    }

    fn uvarint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..5 {
            let Some((&b, tail)) = self.rest.split_first() else {
                return Err("truncated varint".into());
            };
            self.rest = tail;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 5 bytes".into())
    }

    /// Admits `n` elements: no more than the bytes left, and within the response budget.
    fn admit(&mut self, n: u64) -> Result<usize, String> {
        let left = self.rest.len() as u64;
        if n > left {
            return Err(format!("array claims {n} elements with {left} bytes left"));
        }
        self.elements = self.elements.saturating_add(n as usize);
        if self.elements > MAX_ELEMENTS {
            return Err(format!("more than {MAX_ELEMENTS} array elements"));
        }
        Ok(n as usize)
    }

    fn sized(&mut self, len: i64) -> Result<(), String> {
        if len < -1 {
            return Err(format!("negative length {len}"));
        }
        // -1 is null.
        if len == -1 {
            Ok(())
        } else {
            self.skip(len as usize)
        }
    }

    fn named(&self, name: &str) -> Result<&'static Layout, String> {
        self.layouts
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| format!("layout {name} missing"))
    }

    fn layout(&mut self, layout: &'static Layout, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("nesting too deep".into());
        }
        let v = self.version;
        for f in layout.fields {
            if f.tag.is_none() && (f.min..=f.max).contains(&v) {
                self.kind(f.kind, depth)?;
            }
        }
        if layout.flex.is_some_and(|flex| v >= flex) {
            let count = self.uvarint()?;
            for _ in 0..count {
                let tag = self.uvarint()?;
                let size = self.uvarint()?;
                let known = layout.fields.iter().find(|f| {
                    f.tag.is_some_and(|t| u64::from(t) == tag) && (f.min..=f.max).contains(&v)
                });
                match known {
                    // kafka-protocol reads known tagged fields from the stream itself (not
                    // limited to `size`), so walk them the same way to stay aligned.
                    Some(f) => self.kind(f.kind, depth)?,
                    None => self.skip(usize::try_from(size).map_err(|_| "tag size")?)?,
                }
            }
        }
        Ok(())
    }

    fn elements(&mut self, n: usize, elem: Elem, depth: usize) -> Result<(), String> {
        for _ in 0..n {
            match elem {
                Elem::Prim(k) => self.kind(*k, depth)?,
                Elem::Struct(name) => {
                    let l = self.named(name)?;
                    self.layout(l, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    fn kind(&mut self, kind: Kind, depth: usize) -> Result<(), String> {
        match kind {
            Kind::I8 | Kind::Bool => self.skip(1),
            Kind::I16 | Kind::U16 => self.skip(2),
            Kind::I32 => self.skip(4),
            Kind::I64 | Kind::F64 => self.skip(8),
            Kind::Uuid => self.skip(16),
            Kind::UVarint => self.uvarint().map(|_| ()),
            Kind::Str => {
                let len = self.signed(2)?;
                self.sized(len)
            }
            Kind::Bytes => {
                let len = self.signed(4)?;
                self.sized(len)
            }
            Kind::CStr | Kind::CBytes => {
                let len = self.uvarint()? as i64 - 1;
                self.sized(len)
            }
            Kind::Array(elem) => {
                let n = self.signed(4)?;
                if n == -1 {
                    return Ok(());
                }
                let n = self.admit(u64::try_from(n).map_err(|_| format!("negative count {n}"))?)?;
                self.elements(n, elem, depth)
            }
            Kind::CArray(elem) => {
                let raw = self.uvarint()?;
                if raw == 0 {
                    return Ok(());
                }
                let n = self.admit(raw - 1)?;
                self.elements(n, elem, depth)
            }
            Kind::Struct(name) => {
                let l = self.named(name)?;
                self.layout(l, depth + 1)
            }
            Kind::OptionStruct(name) => {
                let present = self.signed(1)?;
                if present == 1 {
                    let l = self.named(name)?;
                    self.layout(l, depth + 1)
                } else {
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{ApiKey, BrokerId, MetadataResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, Message, StrBytes};

    fn metadata() -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("h"))
                    .with_port(9092),
            ])
            .with_topics(vec![
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                    .with_partitions(vec![MetadataResponsePartition::default()]),
            ])
    }

    #[test]
    fn accepts_well_formed_responses_of_every_version() {
        for v in MetadataResponse::VERSIONS.min..=MetadataResponse::VERSIONS.max {
            let mut buf = BytesMut::new();
            metadata().encode(&mut buf, v).unwrap();
            check(ApiKey::Metadata as i16, v, &buf).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }

    #[test]
    fn refuses_counts_the_frame_cannot_hold() {
        // Metadata v1: brokers array count first.
        let mut body = Vec::new();
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        body.extend_from_slice(&[0; 16]);
        let err = check(ApiKey::Metadata as i16, 1, &body).unwrap_err();
        assert!(err.contains("claims 2147483647 elements"), "{err}");
        // Compact form (v9): throttle, then a varint count.
        let mut body = vec![0, 0, 0, 0];
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        assert!(check(ApiKey::Metadata as i16, 9, &body).is_err());
        assert!(check(ApiKey::Metadata as i16, 1, &[0, 0]).is_err());
        assert!(check(999, 0, &[]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), v in 0i16..14) {
            for (key, _) in LAYOUTS {
                let _ = check(*key, v, &data);
            }
        }
    }
}
