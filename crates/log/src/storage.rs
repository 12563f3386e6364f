//! File access for the log, behind a trait so crash behaviour can be simulated.
//!
//! [`FsStorage`] is the real disk. [`MemStorage`] is an in-memory disk that keeps, per file, the
//! bytes written so far and the bytes made durable by the last `sync`, and, per directory, the
//! set of names made durable by the last `sync_dir`; [`MemStorage::crash`] replaces the current
//! state with the durable one (optionally keeping a torn prefix of unsynced appends), as a power
//! loss would.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// A directory tree of files. Paths are absolute or relative as the caller chooses; the log only
/// uses paths below the directory it was opened on.
pub trait Storage: Send + Sync + 'static {
    /// Creates `path` and any missing parents (no fsync: call [`Storage::sync_dir`] on parents).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the regular files directly inside `path`, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for reading and appending; creates it empty if `create` and it is missing.
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>>;
    /// Removes a file (durable only after [`Storage::sync_dir`] on its directory).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything below it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file, replacing `to` (durable only after `sync_dir`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
}

/// One open file. All methods take `&self` so a file can be shared (e.g. fsynced outside the
/// partition lock while appends continue); the log has a single appender per file.
pub trait StorageFile: Send + Sync {
    /// Current length in bytes (including unsynced appends).
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from position `pos`; fails with `UnexpectedEof` if the file is too short.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Writes `data` at the end of the file and returns the position it was written at.
    fn append(&self, data: &[u8]) -> io::Result<u64>;
    /// Cuts the file to `len` bytes (durable only after `sync`).
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// Makes the file's contents durable (fsync / fdatasync).
    fn sync(&self) -> io::Result<()>;
}

/// The real file system via `std::fs`, with positioned reads and writes.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

impl FsStorage {
    /// A handle on the real file system.
    pub fn new() -> Self {
        FsStorage
    }
}

/// A real file plus the append position (the log is the only writer, so tracking the end here
/// avoids an fstat per append).
struct FsFile {
    file: File,
    end: Mutex<u64>,
}

impl Storage for FsStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        let end = file.metadata()?.len();
        Ok(Box::new(FsFile {
            file,
            end: Mutex::new(end),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
}

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(*self.end.lock())
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    fn append(&self, data: &[u8]) -> io::Result<u64> {
        let mut end = self.end.lock();
        let pos = *end;
        if let Err(e) = self.file.write_all_at(data, pos) {
            // A partial write may have extended the file; re-read the real length so the next
            // append does not leave a hole (the log poisons itself on write errors anyway).
            if let Ok(meta) = self.file.metadata() {
                *end = meta.len();
            }
            return Err(e);
        }
        *end = pos + data.len() as u64;
        Ok(pos)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut end = self.end.lock();
        self.file.set_len(len)?;
        *end = len;
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// How [`MemStorage::crash`] treats bytes that were written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced byte and unsynced directory change is lost.
    DropUnsynced,
    /// Like `DropUnsynced`, except that in every file whose written image extends its durable
    /// image, the first `keep` unsynced appended bytes survive (a torn write: writeback got that
    /// far). `keep` larger than the unsynced tail keeps all of it.
    TearLastWrite {
        /// Unsynced bytes kept per file.
        keep: usize,
    },
}

/// One in-memory inode: what was written and what is durable.
#[derive(Default)]
struct MemInode {
    written: Vec<u8>,
    durable: Vec<u8>,
}

type Inode = Arc<Mutex<MemInode>>;

#[derive(Default)]
struct MemState {
    /// Current namespace: path -> inode.
    files: BTreeMap<PathBuf, Inode>,
    /// Durable namespace, as of each directory's last `sync_dir`.
    durable_files: BTreeMap<PathBuf, Inode>,
    /// Directories (always durable once created: the log syncs parents after creating them,
    /// and modelling directory-of-directory durability would add nothing to its tests).
    dirs: BTreeSet<PathBuf>,
    /// Fault injection: the next `n` file syncs fail (for poisoning tests).
    fail_syncs: usize,
    /// Counters for tests: file syncs and directory syncs performed.
    file_syncs: u64,
    dir_syncs: u64,
}

/// An in-memory disk with separate "written" and "durable" images, for crash tests.
#[derive(Clone, Default)]
pub struct MemStorage {
    state: Arc<Mutex<MemState>>,
}

impl std::fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("MemStorage")
            .field("files", &st.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A handle on a file of a [`MemStorage`].
struct MemFile {
    inode: Inode,
    state: Arc<Mutex<MemState>>,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl MemStorage {
    /// An empty in-memory disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a power loss: the durable namespace and each file's durable bytes (plus a torn
    /// prefix of unsynced appends under [`CrashMode::TearLastWrite`]) become the current state.
    /// Handles opened before the crash keep pointing at the old inodes and must not be used.
    pub fn crash(&self, mode: CrashMode) {
        let mut st = self.state.lock();
        let mut files = BTreeMap::new();
        for (path, inode) in &st.durable_files {
            let old = inode.lock();
            let mut bytes = old.durable.clone();
            if let CrashMode::TearLastWrite { keep } = mode
                && old.written.len() > bytes.len()
                && old.written.starts_with(&bytes)
            {
                let end = (bytes.len() + keep).min(old.written.len());
                bytes.extend_from_slice(&old.written[old.durable.len()..end]);
            }
            let fresh = Arc::new(Mutex::new(MemInode {
                written: bytes.clone(),
                durable: bytes,
            }));
            files.insert(path.clone(), fresh);
        }
        st.durable_files = files.clone();
        st.files = files;
    }

    /// Makes the next `n` file syncs fail with an I/O error.
    pub fn fail_next_syncs(&self, n: usize) {
        self.state.lock().fail_syncs = n;
    }

    /// Number of file syncs and directory syncs performed so far.
    pub fn sync_counts(&self) -> (u64, u64) {
        let st = self.state.lock();
        (st.file_syncs, st.dir_syncs)
    }

    /// The current (written) contents of a file, for tests.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state.lock();
        st.files.get(path).map(|i| i.lock().written.clone())
    }

    /// Replaces the current contents of a file (created if missing) without touching durability
    /// bookkeeping beyond marking it durable, for corruption tests.
    pub fn write_file(&self, path: &Path, data: &[u8]) {
        let mut st = self.state.lock();
        let inode = Arc::new(Mutex::new(MemInode {
            written: data.to_vec(),
            durable: data.to_vec(),
        }));
        st.files.insert(path.to_path_buf(), inode.clone());
        st.durable_files.insert(path.to_path_buf(), inode);
    }
}

impl Storage for MemStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        for anc in path.ancestors() {
            if anc.as_os_str().is_empty() {
                break;
            }
            st.dirs.insert(anc.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.state.lock();
        if !st.dirs.contains(path) {
            return Err(not_found(path));
        }
        Ok(st
            .files
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>> {
        let mut st = self.state.lock();
        let inode = match st.files.get(path) {
            Some(i) => i.clone(),
            None if create => {
                let parent = path.parent().unwrap_or(Path::new(""));
                if !st.dirs.contains(parent) {
                    return Err(not_found(parent));
                }
                let i: Inode = Arc::default();
                st.files.insert(path.to_path_buf(), i.clone());
                i
            }
            None => return Err(not_found(path)),
        };
        Ok(Box::new(MemFile {
            inode,
            state: self.state.clone(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if !st.dirs.contains(path) {
            return Err(not_found(path));
        }
        // Directory removal is treated as immediately durable, like directory creation.
        st.files.retain(|p, _| !p.starts_with(path));
        st.durable_files.retain(|p, _| !p.starts_with(path));
        st.dirs.retain(|p| !p.starts_with(path));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let inode = st.files.remove(from).ok_or_else(|| not_found(from))?;
        st.files.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if !st.dirs.contains(path) {
            return Err(not_found(path));
        }
        st.dir_syncs += 1;
        let current: Vec<(PathBuf, Inode)> = st
            .files
            .iter()
            .filter(|(p, _)| p.parent() == Some(path))
            .map(|(p, i)| (p.clone(), i.clone()))
            .collect();
        st.durable_files.retain(|p, _| p.parent() != Some(path));
        st.durable_files.extend(current);
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let st = self.state.lock();
        Ok(st.files.contains_key(path) || st.dirs.contains(path))
    }
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.inode.lock().written.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let inode = self.inode.lock();
        let start = usize::try_from(pos).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .filter(|&e| e <= inode.written.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(&inode.written[start..end]);
        Ok(())
    }

    fn append(&self, data: &[u8]) -> io::Result<u64> {
        let mut inode = self.inode.lock();
        let pos = inode.written.len() as u64;
        inode.written.extend_from_slice(data);
        Ok(pos)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut inode = self.inode.lock();
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        inode.written.resize(len, 0);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        {
            let mut st = self.state.lock();
            if st.fail_syncs > 0 {
                st.fail_syncs -= 1;
                return Err(io::Error::other("injected fsync failure"));
            }
            st.file_syncs += 1;
        }
        let mut inode = self.inode.lock();
        inode.durable = inode.written.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_crash_drops_unsynced_bytes_and_names() {
        let s = MemStorage::new();
        let d = Path::new("/d");
        s.create_dir_all(d).unwrap();
        let f = s.open(&d.join("a"), true).unwrap();
        f.append(b"hello").unwrap();
        f.sync().unwrap();
        s.sync_dir(d).unwrap();
        f.append(b" world").unwrap();
        let g = s.open(&d.join("b"), true).unwrap();
        g.append(b"x").unwrap();
        g.sync().unwrap(); // content durable, name not
        s.crash(CrashMode::DropUnsynced);
        assert_eq!(s.read_file(&d.join("a")).unwrap(), b"hello");
        assert!(s.read_file(&d.join("b")).is_none());
    }

    #[test]
    fn mem_crash_tears_unsynced_tail() {
        let s = MemStorage::new();
        let d = Path::new("/d");
        s.create_dir_all(d).unwrap();
        let f = s.open(&d.join("a"), true).unwrap();
        f.append(b"abc").unwrap();
        f.sync().unwrap();
        s.sync_dir(d).unwrap();
        f.append(b"defgh").unwrap();
        s.crash(CrashMode::TearLastWrite { keep: 2 });
        assert_eq!(s.read_file(&d.join("a")).unwrap(), b"abcde");
    }

    #[test]
    fn mem_removal_is_undone_by_crash_without_dir_sync() {
        let s = MemStorage::new();
        let d = Path::new("/d");
        s.create_dir_all(d).unwrap();
        let f = s.open(&d.join("a"), true).unwrap();
        f.append(b"abc").unwrap();
        f.sync().unwrap();
        s.sync_dir(d).unwrap();
        s.remove_file(&d.join("a")).unwrap();
        assert!(!s.exists(&d.join("a")).unwrap());
        s.crash(CrashMode::DropUnsynced);
        assert!(s.exists(&d.join("a")).unwrap());
        s.remove_file(&d.join("a")).unwrap();
        s.sync_dir(d).unwrap();
        s.crash(CrashMode::DropUnsynced);
        assert!(!s.exists(&d.join("a")).unwrap());
    }

    #[test]
    fn fs_append_read_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new();
        let p = dir.path().join("f");
        let f = s.open(&p, true).unwrap();
        assert_eq!(f.append(b"hello").unwrap(), 0);
        assert_eq!(f.append(b"world").unwrap(), 5);
        let mut buf = [0u8; 3];
        f.read_at(&mut buf, 4).unwrap();
        assert_eq!(&buf, b"owo");
        f.truncate(4).unwrap();
        assert_eq!(f.len().unwrap(), 4);
        assert!(f.read_at(&mut buf, 3).is_err());
        f.sync().unwrap();
        s.sync_dir(dir.path()).unwrap();
        assert_eq!(s.list_dir(dir.path()).unwrap(), vec!["f".to_string()]);
    }
}
