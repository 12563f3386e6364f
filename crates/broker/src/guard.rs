//! Pre-decode guard: walks a request body with the wire layout of its message (see
//! `guard/schema.rs`, generated from kafka-protocol's definitions) before kafka-protocol decodes
//! it, because kafka-protocol 0.18 sizes vectors from element counts read off the wire
//! (`Vec::with_capacity(n)`), so a tiny frame claiming 2^31 elements aborts the process.
//!
//! Invariant upheld: if [`check`] accepts a body, every array count in it is at most the number
//! of bytes left at that point, and the request holds at most [`MAX_ELEMENTS`] array elements in
//! total, so decoding allocates memory proportional to the frame.

mod schema;

/// Upper bound on array elements in one request (all arrays, all nesting levels).
pub const MAX_ELEMENTS: usize = 1 << 20;
/// Nesting bound; the schemas are at most a few levels deep.
const MAX_DEPTH: usize = 16;

/// Primitive and composite wire types of a field. Some variants do not occur in the current
/// table but are emitted by the generator for other messages.
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
    /// A nested struct (by name within the same request).
    Struct(&'static str),
    /// INT8 presence marker (1 = present) then the struct.
    OptionStruct(&'static str),
}

/// Element type of an array.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Elem {
    Prim(&'static Kind),
    Struct(&'static str),
}

/// One field: present in versions `min..=max`; `tag` is `Some` for a known tagged field.
#[derive(Debug)]
pub(crate) struct Field {
    pub tag: Option<u32>,
    pub min: i16,
    pub max: i16,
    pub kind: Kind,
}

/// Layout of one struct; `flex` is the first flexible version (tagged-field section present).
#[derive(Debug)]
pub(crate) struct StructSchema {
    pub name: &'static str,
    pub flex: Option<i16>,
    pub fields: &'static [Field],
}

/// Whether the guard knows the layout of this API's request.
pub fn knows(api_key: i16) -> bool {
    schema::REQUESTS.iter().any(|(k, _)| *k == api_key)
}

/// Checks that `body` (the bytes after the request header) can be decoded without unbounded
/// allocation. Returns a reason on rejection.
pub fn check(api_key: i16, version: i16, body: &[u8]) -> Result<(), String> {
    let Some((_, structs)) = schema::REQUESTS.iter().find(|(k, _)| *k == api_key) else {
        return Err(format!("no request layout known for API key {api_key}"));
    };
    let mut w = Walker {
        buf: body,
        structs,
        version,
        elements: 0,
    };
    w.walk_struct(&structs[0], 0)
}

struct Walker<'a> {
    buf: &'a [u8],
    structs: &'static [StructSchema],
    version: i16,
    elements: usize,
}

impl Walker<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.buf.len() < n {
            return Err(format!("needs {n} more bytes, {} left", self.buf.len()));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn int(&mut self, n: usize) -> Result<i64, String> {
        let b = self.take(n)?;
        // Sign-extend big-endian bytes.
        let mut v: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
        for &x in b {
            v = (v << 8) | i64::from(x);
        }
        Ok(v)
    }

    fn uvarint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..5 {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("unsigned varint longer than 5 bytes".into())
    }

    /// Checks an element count against the bytes left and the request-wide budget.
    fn count(&mut self, n: u64) -> Result<usize, String> {
        let left = self.buf.len() as u64;
        if n > left {
            return Err(format!("array claims {n} elements with {left} bytes left"));
        }
        self.elements += n as usize;
        if self.elements > MAX_ELEMENTS {
            return Err(format!("more than {MAX_ELEMENTS} array elements"));
        }
        Ok(n as usize)
    }

    fn skip_len(&mut self, len: i64, nullable_marker: i64) -> Result<(), String> {
        if len == nullable_marker {
            return Ok(());
        }
        let len = usize::try_from(len).map_err(|_| format!("negative length {len}"))?;
        self.take(len).map(|_| ())
    }

    fn find(&self, name: &str) -> Result<&'static StructSchema, String> {
        self.structs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("layout of {name} missing"))
    }

    fn walk_struct(&mut self, s: &'static StructSchema, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("nesting too deep".into());
        }
        let v = self.version;
        for f in s.fields {
            if f.tag.is_none() && (f.min..=f.max).contains(&v) {
                self.walk_kind(f.kind, depth)?;
            }
        }
        if s.flex.is_some_and(|flex| v >= flex) {
            let n = self.uvarint()?;
            for _ in 0..n {
                let tag = self.uvarint()?;
                let size = self.uvarint()?;
                let known = s.fields.iter().find(|f| {
                    f.tag.is_some_and(|t| u64::from(t) == tag) && (f.min..=f.max).contains(&v)
                });
                match known {
                    // kafka-protocol decodes known tagged fields from the stream, not bounded by
                    // `size`, so walk them the same way to stay in step.
                    Some(f) => self.walk_kind(f.kind, depth)?,
                    None => self.take(size as usize).map(|_| ())?,
                }
            }
        }
        Ok(())
    }

    fn walk_kind(&mut self, kind: Kind, depth: usize) -> Result<(), String> {
        match kind {
            Kind::I8 | Kind::Bool => self.take(1).map(|_| ()),
            Kind::I16 | Kind::U16 => self.take(2).map(|_| ()),
            Kind::I32 => self.take(4).map(|_| ()),
            Kind::I64 | Kind::F64 => self.take(8).map(|_| ()),
            Kind::Uuid => self.take(16).map(|_| ()),
            Kind::UVarint => self.uvarint().map(|_| ()),
            Kind::Str => {
                let len = self.int(2)?;
                self.skip_len(len, -1)
            }
            Kind::Bytes => {
                let len = self.int(4)?;
                self.skip_len(len, -1)
            }
            Kind::CStr | Kind::CBytes => {
                let n = self.uvarint()? as i64;
                self.skip_len(n - 1, -1)
            }
            Kind::Array(elem) => {
                let n = self.int(4)?;
                if n == -1 {
                    return Ok(());
                }
                let n = u64::try_from(n).map_err(|_| format!("negative array length {n}"))?;
                let n = self.count(n)?;
                self.walk_elems(elem, n, depth)
            }
            Kind::CArray(elem) => {
                let n = self.uvarint()?;
                if n == 0 {
                    return Ok(());
                }
                let n = self.count(n - 1)?;
                self.walk_elems(elem, n, depth)
            }
            Kind::Struct(name) => {
                let s = self.find(name)?;
                self.walk_struct(s, depth + 1)
            }
            Kind::OptionStruct(name) => {
                // kafka-protocol reads the struct only when the marker is exactly 1.
                if self.int(1)? != 1 {
                    return Ok(());
                }
                let s = self.find(name)?;
                self.walk_struct(s, depth + 1)
            }
        }
    }

    fn walk_elems(&mut self, elem: Elem, n: usize, depth: usize) -> Result<(), String> {
        match elem {
            Elem::Prim(k) => {
                for _ in 0..n {
                    self.walk_kind(*k, depth)?;
                }
            }
            Elem::Struct(name) => {
                let s = self.find(name)?;
                for _ in 0..n {
                    self.walk_struct(s, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}
