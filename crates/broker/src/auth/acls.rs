//! ACLs, durable in `<data_dir>/acls` (the decision logic is in [`super::acl`]).
//!
//! # FORMAT
//!
//! A UTF-8 text file of `\n`-terminated lines:
//!
//! ```text
//! waterline-acls 1
//! <resource_type> <pattern_type> <resource_name> <principal> <host> <operation> <permission>
//! ...
//! crc32c <8 lowercase hex digits>
//! ```
//!
//! - `<resource_type>`: `TOPIC`, `GROUP`, `CLUSTER` or `TRANSACTIONAL_ID`.
//! - `<pattern_type>`: `LITERAL` or `PREFIXED`.
//! - `<resource_name>`, `<principal>`, `<host>`: the text with every byte that is `%`, a space,
//!   or outside `!`..`~` written as `%XX` (two uppercase hex digits), as in the credentials
//!   file, so no value splits a line or a field.
//! - `<operation>`: Kafka's name (`READ`, `DESCRIBE_CONFIGS`, `ALL`, ...).
//! - `<permission>`: `ALLOW` or `DENY`.
//! - The last line is the CRC-32C (Castagnoli) of every byte before it, header included.
//!
//! Lines are sorted (by the fields in the order above) and unique. A file that fails its
//! checksum or does not parse refuses the start with an error naming the path and line: ACLs
//! are never silently dropped (an empty set would look like "deny everyone but super users",
//! but a set missing a DENY would grant access).
//!
//! Writes: the whole file is written to `acls.tmp`, fsynced, renamed over `acls`, and the data
//! directory is fsynced, before the change is visible to authorization or acknowledged to
//! CreateAcls/DeleteAcls. A crash leaves the old or the new file, never a mix (a leftover
//! `.tmp` is ignored and replaced).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use super::credentials::{escape_user as escape, unescape_user as unescape};
use crate::error::BrokerError;

const FILE: &str = "acls";
const HEADER: &str = "waterline-acls 1";

/// The durable ACL set.
pub struct Acls {
    path: PathBuf,
    dir: PathBuf,
    current: parking_lot::RwLock<Arc<Vec<AclBinding>>>,
    /// Serialises writers, so each file written holds every change acknowledged before it.
    write: parking_lot::Mutex<()>,
}

impl Acls {
    /// Loads `<dir>/acls` (none yet: no ACLs).
    pub fn open(dir: &Path) -> Result<Acls, BrokerError> {
        let path = dir.join(FILE);
        let set = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|reason| BrokerError::CorruptMetadata {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(BrokerError::io("reading", &path, e)),
        };
        Ok(Acls {
            path,
            dir: dir.to_path_buf(),
            current: parking_lot::RwLock::new(Arc::new(set.into_iter().collect())),
            write: parking_lot::Mutex::new(()),
        })
    }

    /// A snapshot of every ACL, sorted.
    pub fn snapshot(&self) -> Arc<Vec<AclBinding>> {
        self.current.read().clone()
    }

    /// Changes the set with `change` and makes the result durable before it is visible
    /// (blocking: call from a blocking thread). Nothing is written if the set is unchanged.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut BTreeSet<AclBinding>) -> R,
    ) -> Result<R, BrokerError> {
        let _w = self.write.lock();
        let before: BTreeSet<AclBinding> = self.current.read().iter().cloned().collect();
        let mut next = before.clone();
        let r = change(&mut next);
        if next != before {
            self.persist(&next)?;
            *self.current.write() = Arc::new(next.into_iter().collect());
        }
        Ok(r)
    }

    /// Writes the file atomically: temp file, fsync, rename, fsync of the directory.
    fn persist(&self, set: &BTreeSet<AclBinding>) -> Result<(), BrokerError> {
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let bytes = encode(set.iter());
        let mut f =
            std::fs::File::create(&tmp).map_err(|e| BrokerError::io("creating", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| BrokerError::io("writing", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(|e| BrokerError::io("renaming", &tmp, e))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| BrokerError::io("syncing", &self.dir, e))
    }
}

/// The file's bytes for `acls` (given sorted).
pub fn encode<'a>(acls: impl Iterator<Item = &'a AclBinding>) -> Vec<u8> {
    let mut text = format!("{HEADER}\n");
    for b in acls {
        text.push_str(&format!(
            "{} {} {} {} {} {} {}\n",
            b.resource_type.name(),
            b.pattern_type.name(),
            escape(&b.resource_name),
            escape(&b.principal),
            escape(&b.host),
            b.operation.name(),
            b.permission.name(),
        ));
    }
    let crc = crc32c::crc32c(text.as_bytes());
    text.push_str(&format!("crc32c {crc:08x}\n"));
    text.into_bytes()
}

/// Parses the file's bytes; the error names the line.
pub fn decode(bytes: &[u8]) -> Result<BTreeSet<AclBinding>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or("no checksum line")?;
    let (body, last) = text.split_at(body_end);
    let want = last
        .trim_end_matches('\n')
        .strip_prefix("crc32c ")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("last line is not `crc32c <hex>`")?;
    let got = crc32c::crc32c(body.as_bytes());
    if got != want {
        return Err(format!(
            "checksum mismatch (stored {want:08x}, computed {got:08x})"
        ));
    }
    let mut lines = body.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("first line is not `{HEADER}`"));
    }
    let mut set = BTreeSet::new();
    for (n, line) in lines.enumerate() {
        let at = |why: &str| format!("line {}: {why}", n + 2);
        let f: Vec<&str> = line.split(' ').collect();
        let [rt, pt, name, principal, host, op, perm] = f[..] else {
            return Err(at("expected 7 fields"));
        };
        let b = AclBinding {
            resource_type: ResourceType::parse(rt).ok_or_else(|| at("unknown resource type"))?,
            pattern_type: PatternType::parse(pt).ok_or_else(|| at("unknown pattern type"))?,
            resource_name: unescape(name).ok_or_else(|| at("bad escape"))?,
            principal: unescape(principal).ok_or_else(|| at("bad escape"))?,
            host: unescape(host).ok_or_else(|| at("bad escape"))?,
            operation: Operation::parse(op).ok_or_else(|| at("unknown operation"))?,
            permission: Permission::parse(perm).ok_or_else(|| at("unknown permission"))?,
        };
        b.validate().map_err(|e| at(&e.to_string()))?;
        set.insert(b);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(name: &str, principal: &str) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Prefixed,
            principal: principal.into(),
            host: "*".into(),
            operation: Operation::DescribeConfigs,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn file_round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let acls = Acls::open(dir.path()).unwrap();
        assert!(acls.snapshot().is_empty());
        let added = acls
            .update(|s| {
                s.insert(b("a b%", "User:x y"));
                s.insert(b("t", "User:*"))
            })
            .unwrap();
        assert!(added);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(
            text.contains("TOPIC PREFIXED a%20b%25 User:x%20y * DESCRIBE_CONFIGS ALLOW\n"),
            "{text}"
        );
        drop(acls);
        let acls = Acls::open(dir.path()).unwrap();
        assert_eq!(acls.snapshot().len(), 2);
        acls.update(|s| s.retain(|x| x.principal != "User:*"))
            .unwrap();
        assert_eq!(
            *Acls::open(dir.path()).unwrap().snapshot(),
            vec![b("a b%", "User:x y")]
        );
    }

    #[test]
    fn damage_is_refused_naming_the_problem() {
        let set: BTreeSet<AclBinding> = [b("t", "User:u")].into_iter().collect();
        let good = encode(set.iter());
        assert_eq!(decode(&good).unwrap(), set);
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        assert!(decode(&flipped).unwrap_err().contains("checksum"));
        assert!(decode(&good[..good.len() - 3]).is_err());
        let body = format!("{HEADER}\nTOPIC LITERAL t User:u * FLY ALLOW\n");
        let bad = format!("{body}crc32c {:08x}\n", crc32c::crc32c(body.as_bytes()));
        assert!(decode(bad.as_bytes()).unwrap_err().contains("line 2"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), &flipped).unwrap();
        let err = Acls::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("acls") && err.contains("checksum"), "{err}");
    }
}
