//! The walker: steps through a body with a table's layouts without decoding anything.
//!
//! It follows kafka-protocol's decoders exactly (same field order, same null markers, same
//! handling of tagged fields), so it stays in step with what kafka-protocol will read; every
//! count is admitted only if the bytes left can hold that many elements.

use crate::{Elem, Kind, MAX_DEPTH, StructSchema, WireError};

pub(crate) struct Walker<'a> {
    rest: &'a [u8],
    structs: &'static [StructSchema],
    version: i16,
    /// Elements admitted so far, across all arrays; never above `limit`.
    elements: usize,
    limit: usize,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(
        body: &'a [u8],
        structs: &'static [StructSchema],
        version: i16,
        limit: usize,
    ) -> Self {
        Walker {
            rest: body,
            structs,
            version,
            elements: 0,
            limit,
        }
    }

    /// Bytes not walked yet.
    pub(crate) fn left(&self) -> usize {
        self.rest.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.rest.len() {
            return Err(WireError::Truncated {
                needed: n,
                left: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn skip(&mut self, n: usize) -> Result<(), WireError> {
        self.take(n).map(|_| ())
    }

    /// A big-endian signed integer of `width` (1..=8) bytes, sign-extended.
    fn signed(&mut self, width: usize) -> Result<i64, WireError> {
        let b = self.take(width)?;
        let init: i64 = if b.first().is_some_and(|x| x & 0x80 != 0) {
            -1
        } else {
            0
        };
        Ok(b.iter().fold(init, |acc, x| (acc << 8) | i64::from(*x)))
    }

    /// An UNSIGNED_VARINT of at most 5 bytes (a u32 on the wire), as kafka-protocol reads it.
    fn uvarint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..5 {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong)
    }

    /// Admits `n` elements: no more than the bytes left, and within the budget.
    fn admit(&mut self, n: u64) -> Result<usize, WireError> {
        let left = self.rest.len() as u64;
        if n > left {
            return Err(WireError::CountExceedsBytes { count: n, left });
        }
        // n <= left <= usize::MAX, so the cast is exact.
        let n = n as usize;
        self.elements = self.elements.saturating_add(n);
        if self.elements > self.limit {
            return Err(WireError::TooManyElements { limit: self.limit });
        }
        Ok(n)
    }

    /// Skips a string or bytes value of `len` bytes; -1 is null.
    fn sized(&mut self, len: i64) -> Result<(), WireError> {
        if len == -1 {
            return Ok(());
        }
        let len = usize::try_from(len).map_err(|_| WireError::NegativeLength(len))?;
        self.skip(len)
    }

    fn named(&self, name: &'static str) -> Result<&'static StructSchema, WireError> {
        self.structs
            .iter()
            .find(|s| s.name == name)
            .ok_or(WireError::MissingLayout(name))
    }

    pub(crate) fn walk_struct(
        &mut self,
        s: &'static StructSchema,
        depth: usize,
    ) -> Result<(), WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::TooDeep);
        }
        let v = self.version;
        for f in s.fields {
            if f.tag.is_none() && (f.min..=f.max).contains(&v) {
                self.walk_kind(f.kind, depth)?;
            }
        }
        if s.flex.is_some_and(|flex| v >= flex) {
            // Each tagged field takes at least two bytes (tag, size), so this loop is bounded
            // by the body even for a huge count.
            let count = self.uvarint()?;
            for _ in 0..count {
                let tag = self.uvarint()?;
                let size = self.uvarint()?;
                let known = s.fields.iter().find(|f| {
                    f.tag.is_some_and(|t| u64::from(t) == tag) && (f.min..=f.max).contains(&v)
                });
                match known {
                    // kafka-protocol decodes known tagged fields from the stream, not bounded
                    // by `size`, so walk them the same way to stay in step.
                    Some(f) => self.walk_kind(f.kind, depth)?,
                    None => self.skip(usize::try_from(size).unwrap_or(usize::MAX))?,
                }
            }
        }
        Ok(())
    }

    fn walk_kind(&mut self, kind: Kind, depth: usize) -> Result<(), WireError> {
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
                // Length + 1; 0 (null) becomes -1. A 5-byte varint fits an i64.
                let len = self.uvarint()? as i64 - 1;
                self.sized(len)
            }
            Kind::Array(elem) => {
                let n = self.signed(4)?;
                if n == -1 {
                    return Ok(());
                }
                let n = u64::try_from(n).map_err(|_| WireError::NegativeCount(n))?;
                let n = self.admit(n)?;
                self.walk_elems(elem, n, depth)
            }
            Kind::CArray(elem) => {
                let raw = self.uvarint()?;
                if raw == 0 {
                    return Ok(());
                }
                let n = self.admit(raw - 1)?;
                self.walk_elems(elem, n, depth)
            }
            Kind::Struct(name) => {
                let s = self.named(name)?;
                self.walk_struct(s, depth + 1)
            }
            Kind::OptionStruct(name) => {
                // kafka-protocol reads the struct only when the marker is exactly 1.
                if self.signed(1)? != 1 {
                    return Ok(());
                }
                let s = self.named(name)?;
                self.walk_struct(s, depth + 1)
            }
        }
    }

    fn walk_elems(&mut self, elem: Elem, n: usize, depth: usize) -> Result<(), WireError> {
        match elem {
            Elem::Prim(k) => {
                for _ in 0..n {
                    self.walk_kind(*k, depth)?;
                }
            }
            Elem::Struct(name) => {
                let s = self.named(name)?;
                for _ in 0..n {
                    self.walk_struct(s, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}
