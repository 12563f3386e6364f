//! SCRAM credentials, durable in `<data_dir>/scram-credentials`.
//!
//! # FORMAT
//!
//! A UTF-8 text file of `\n`-terminated lines:
//!
//! ```text
//! waterline-scram-credentials 1
//! <user> <mechanism> <iterations> <salt> <stored_key> <server_key>
//! ...
//! crc32c <8 lowercase hex digits>
//! ```
//!
//! - `<user>`: the user name with every byte that is `%`, a space, or outside `!`..`~`
//!   written as `%XX` (two uppercase hex digits), so a name never splits a line or a field.
//! - `<mechanism>`: `SCRAM-SHA-256` or `SCRAM-SHA-512`.
//! - `<iterations>`: decimal PBKDF2 iteration count.
//! - `<salt>`, `<stored_key>`, `<server_key>`: standard base64 with padding (RFC 5802's
//!   Salt, StoredKey, ServerKey). No password and no salted password is ever written.
//! - The last line is the CRC-32C (Castagnoli) of every byte before it, header included.
//!
//! Lines are sorted by user, then mechanism. A file that fails its checksum or does not parse
//! refuses the start with an error naming the path and line: credentials are never silently
//! dropped (an empty set would lock every user out, or worse, be mistaken for "no users").
//!
//! Writes: the whole file is written to `scram-credentials.tmp`, fsynced, renamed over
//! `scram-credentials`, and the data directory is fsynced, before the change is visible to
//! authentications or acknowledged to AlterUserScramCredentials. A crash leaves the old or the
//! new file, never a mix (a leftover `.tmp` is ignored and replaced).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use waterline_sasl::{ScramCredential, ScramMechanism};

use crate::error::BrokerError;

const FILE: &str = "scram-credentials";
const HEADER: &str = "waterline-scram-credentials 1";

/// Whether `name` may be a user name: 1 to 255 characters, none of them a control character.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 255 && !name.chars().any(char::is_control)
}

/// Every user's credentials: user -> mechanism -> credential.
pub type CredentialMap = BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>;

/// One change requested by AlterUserScramCredentials.
#[derive(Debug, Clone)]
pub enum CredentialChange {
    /// Create or replace a user's credential for one mechanism.
    Upsert(String, ScramCredential),
    /// Remove a user's credential for one mechanism.
    Delete(String, ScramMechanism),
}

/// The durable credential set.
pub struct Credentials {
    path: PathBuf,
    dir: PathBuf,
    current: parking_lot::RwLock<std::sync::Arc<CredentialMap>>,
    /// Serialises writers, so each file written holds every change acknowledged before it.
    write: parking_lot::Mutex<()>,
}

impl Credentials {
    /// Loads `<dir>/scram-credentials` (none yet: no users).
    pub fn open(dir: &Path) -> Result<Credentials, BrokerError> {
        let path = dir.join(FILE);
        let map = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|reason| BrokerError::CorruptMetadata {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CredentialMap::new(),
            Err(e) => return Err(BrokerError::io("reading", &path, e)),
        };
        Ok(Credentials {
            path,
            dir: dir.to_path_buf(),
            current: parking_lot::RwLock::new(std::sync::Arc::new(map)),
            write: parking_lot::Mutex::new(()),
        })
    }

    /// A user's credential for a mechanism.
    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.current.read().get(user)?.get(&mechanism).cloned()
    }

    /// A snapshot of every credential.
    pub fn snapshot(&self) -> std::sync::Arc<CredentialMap> {
        self.current.read().clone()
    }

    /// Applies changes and makes them durable before they are visible (blocking: call from
    /// a blocking thread). Returns, per change, whether it changed anything: a delete of a
    /// credential that does not exist is `false` without failing the others.
    pub fn apply(&self, changes: Vec<CredentialChange>) -> Result<Vec<bool>, BrokerError> {
        let _w = self.write.lock();
        let mut next = (**self.current.read()).clone();
        let mut applied = Vec::with_capacity(changes.len());
        for c in changes {
            match c {
                CredentialChange::Upsert(user, cred) => {
                    next.entry(user).or_default().insert(cred.mechanism, cred);
                    applied.push(true);
                }
                CredentialChange::Delete(user, m) => {
                    let removed = next.get_mut(&user).and_then(|ms| ms.remove(&m)).is_some();
                    if next.get(&user).is_some_and(|ms| ms.is_empty()) {
                        next.remove(&user);
                    }
                    applied.push(removed);
                }
            }
        }
        self.persist(&next)?;
        *self.current.write() = std::sync::Arc::new(next);
        Ok(applied)
    }

    /// Writes the file atomically: temp file, fsync, rename, fsync of the directory.
    fn persist(&self, map: &CredentialMap) -> Result<(), BrokerError> {
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let bytes = encode(map);
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

fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if b == b'%' || !(0x21..=0x7e).contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

fn unescape_user(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file's bytes for `map`.
pub fn encode(map: &CredentialMap) -> Vec<u8> {
    let mut text = format!("{HEADER}\n");
    for (user, ms) in map {
        for c in ms.values() {
            text.push_str(&format!(
                "{} {} {} {} {} {}\n",
                escape_user(user),
                c.mechanism.name(),
                c.iterations,
                B64.encode(&c.salt),
                B64.encode(&c.stored_key),
                B64.encode(&c.server_key)
            ));
        }
    }
    let crc = crc32c::crc32c(text.as_bytes());
    text.push_str(&format!("crc32c {crc:08x}\n"));
    text.into_bytes()
}

/// Parses the file's bytes; the error names the line.
pub fn decode(bytes: &[u8]) -> Result<CredentialMap, String> {
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
    let mut map = CredentialMap::new();
    for (n, line) in lines.enumerate() {
        let at = |why: &str| format!("line {}: {why}", n + 2);
        let f: Vec<&str> = line.split(' ').collect();
        let [user, mech, iterations, salt, stored, server] = f[..] else {
            return Err(at("expected 6 fields"));
        };
        let user = unescape_user(user).ok_or_else(|| at("bad user name escape"))?;
        let mechanism = waterline_sasl::Mechanism::parse(mech)
            .and_then(|m| m.scram())
            .ok_or_else(|| at("unknown mechanism"))?;
        let iterations: u32 = iterations.parse().map_err(|_| at("bad iterations"))?;
        let d = |s: &str| B64.decode(s).map_err(|_| at("bad base64"));
        let cred = ScramCredential {
            mechanism,
            salt: d(salt)?,
            iterations,
            stored_key: d(stored)?,
            server_key: d(server)?,
        };
        if cred.stored_key.len() != mechanism.hash_len()
            || cred.server_key.len() != mechanism.hash_len()
        {
            return Err(at("key length does not match the mechanism"));
        }
        map.entry(user).or_default().insert(mechanism, cred);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(m: ScramMechanism, pw: &str) -> ScramCredential {
        ScramCredential::from_password(m, pw.as_bytes(), b"salt".to_vec(), 4096).unwrap()
    }

    #[test]
    fn file_round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = Credentials::open(dir.path()).unwrap();
        let odd = "a b%c\u{e9}";
        let applied = c
            .apply(vec![
                CredentialChange::Upsert("alice".into(), cred(ScramMechanism::Sha256, "pw")),
                CredentialChange::Upsert(odd.into(), cred(ScramMechanism::Sha512, "x")),
                CredentialChange::Delete("nobody".into(), ScramMechanism::Sha256),
            ])
            .unwrap();
        assert_eq!(applied, vec![true, true, false]);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(
            text.contains("a%20b%25c%C3%A9 SCRAM-SHA-512 4096 c2FsdA== "),
            "{text}"
        );
        assert!(!text.contains("pw"));
        drop(c);
        let c = Credentials::open(dir.path()).unwrap();
        assert!(
            c.get("alice", ScramMechanism::Sha256)
                .unwrap()
                .verify_password(b"pw")
        );
        assert!(
            c.get(odd, ScramMechanism::Sha512)
                .unwrap()
                .verify_password(b"x")
        );
        assert!(c.get("alice", ScramMechanism::Sha512).is_none());
        c.apply(vec![CredentialChange::Delete(
            "alice".into(),
            ScramMechanism::Sha256,
        )])
        .unwrap();
        assert_eq!(c.snapshot().len(), 1);
    }

    #[test]
    fn damage_is_refused_naming_the_problem() {
        let mut map = CredentialMap::new();
        map.entry("u".into())
            .or_default()
            .insert(ScramMechanism::Sha256, cred(ScramMechanism::Sha256, "p"));
        let good = encode(&map);
        assert_eq!(decode(&good).unwrap(), map);
        let mut flipped = good.clone();
        flipped[35] ^= 1;
        assert!(decode(&flipped).unwrap_err().contains("checksum"));
        assert!(decode(&good[..good.len() - 3]).is_err());
        assert!(decode(b"").is_err());
        // A well-formed checksum over a malformed line names the line.
        let body = format!("{HEADER}\nu SCRAM-SHA-1 4096 a b c\n");
        let bad = format!("{body}crc32c {:08x}\n", crc32c::crc32c(body.as_bytes()));
        assert!(decode(bad.as_bytes()).unwrap_err().contains("line 2"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), &flipped).unwrap();
        let err = Credentials::open(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("scram-credentials") && err.contains("checksum"),
            "{err}"
        );
    }

    #[test]
    fn user_names() {
        assert!(valid_user_name("alice@example.com"));
        assert!(!valid_user_name(""));
        assert!(!valid_user_name("a\nb"));
        assert!(!valid_user_name(&"x".repeat(256)));
    }
}
