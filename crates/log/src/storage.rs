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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};

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
    /// Makes every write and every directory change made so far under `path` durable at once
    /// (for closing many logs with one flush instead of several fsyncs each). Storages that
    /// cannot answer `Unsupported`, and callers then close logs one by one.
    fn sync_all(&self, path: &Path) -> io::Result<()> {
        let _ = path;
        Err(io::ErrorKind::Unsupported.into())
    }
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
    /// An fsync the storage made on its own for this file (e.g. before closing a cached
    /// handle) failed: the error `sync` would report. A flush of the whole storage
    /// ([`Storage::sync_all`]) does not see it, so a caller relying on one checks this.
    fn sync_error(&self) -> Option<io::Error> {
        None
    }
}

/// Whether `e` says the process or the system is out of file descriptors (EMFILE, ENFILE).
/// Storages return it only when opening a handle failed, before the operation touched the
/// file: nothing was read, written or fsynced, and a retry can succeed once descriptors are
/// free again, so it never poisons a log.
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    e.raw_os_error().is_some_and(|c| {
        c == nix::errno::Errno::EMFILE as i32 || c == nix::errno::Errno::ENFILE as i32
    })
}

/// Open file handles an [`FsStorage`] keeps by default ([`FsStorage::new`]).
pub const DEFAULT_MAX_OPEN_FILES: usize = 1024;

/// The real file system via `std::fs`, with positioned reads and writes.
///
/// Files are opened on demand through a bounded cache of file handles shared by every file of
/// this storage (and of its clones), so the number of files a log holds is limited by disk,
/// not by the process's open-file limit. A [`StorageFile`] is a path plus the state the log
/// needs without the file being open (its length, whether it has unsynced writes); its handle
/// is opened when a read or write needs it and may be closed again to make room for another
/// file's (least recently used first, approximated by the CLOCK algorithm so that a hit costs
/// no shared lock: each use sets a flag that the sweep clears, and the sweep closes the first
/// handle it finds unflagged and not in use).
///
/// *Invariant (bound):* at most `max_open_files` handles are open, plus at most one per thread
/// that is inside a file operation at that moment (a handle in use is never closed; if every
/// handle is in use, the opener goes over the bound rather than wait).
///
/// *Invariant (durability):* closing a handle never loses or hides a write. A handle with
/// writes not yet covered by a `sync` is fsynced before it is closed; if that fsync fails, the
/// error sticks to the file and every later `sync` of it fails, so the log poisons itself as
/// if its own fsync had failed. A closed handle therefore has no writes of ours to sync. A
/// file that existed when it was opened is fsynced by its first `sync` even without writes
/// (a killed process may have left unsynced bytes in it, which recovery then trusts).
///
/// A file is named by its path: renaming or removing a file while a [`StorageFile`] of it is
/// alive, as the log never does except for files it reopens afterwards, would make a later
/// reopen find another file or none (an error, never silent data from the wrong file: the
/// reopened file's identity is checked).
#[derive(Clone)]
pub struct FsStorage {
    cache: Arc<HandleCache>,
}

impl std::fmt::Debug for FsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStorage")
            .field("max_open_files", &self.cache.max_open)
            .field("open_files", &self.open_files())
            .finish()
    }
}

impl Default for FsStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl FsStorage {
    /// A handle on the real file system keeping at most [`DEFAULT_MAX_OPEN_FILES`] files open.
    pub fn new() -> Self {
        Self::with_max_open_files(DEFAULT_MAX_OPEN_FILES)
    }

    /// A handle on the real file system keeping at most `max_open_files` (at least 1) files
    /// open at once (see the type's bound invariant).
    pub fn with_max_open_files(max_open_files: usize) -> Self {
        FsStorage {
            cache: Arc::new(HandleCache {
                max_open: max_open_files.max(1),
                ring: Mutex::new(Ring::default()),
                open: AtomicUsize::new(0),
                opened: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            }),
        }
    }

    /// The bound on open handles this storage was created with.
    pub fn max_open_files(&self) -> usize {
        self.cache.max_open
    }

    /// Handles open right now.
    pub fn open_files(&self) -> usize {
        self.cache.open.load(Ordering::Relaxed)
    }

    /// Handles opened and handles closed to make room since the storage was created.
    pub fn handle_counts(&self) -> (u64, u64) {
        (
            self.cache.opened.load(Ordering::Relaxed),
            self.cache.evicted.load(Ordering::Relaxed),
        )
    }
}

/// The shared handle cache of an [`FsStorage`].
struct HandleCache {
    max_open: usize,
    /// Files whose handle is open, in CLOCK order (weak: a dropped file closes its handle
    /// itself and its entry is skipped and removed by the next sweep).
    ring: Mutex<Ring>,
    /// Handles open right now.
    open: AtomicUsize,
    opened: AtomicU64,
    evicted: AtomicU64,
}

#[derive(Default)]
struct Ring {
    entries: Vec<Weak<LazyInner>>,
    hand: usize,
}

impl HandleCache {
    /// Makes room for one more open handle (closing others as needed) and records `file` as
    /// open. Called with `file`'s own state locked; only `try_lock`s other files' states, so
    /// it never waits on another file (lock order: a file's state, then the ring).
    fn admit(&self, file: &Arc<LazyInner>) {
        let mut ring = self.ring.lock();
        while self.open.load(Ordering::Relaxed) >= self.max_open {
            if !self.evict_one(&mut ring) {
                break;
            }
        }
        // Dead entries of dropped files accumulate between sweeps; keep the ring small.
        if ring.entries.len() > 2 * self.max_open + 16 {
            ring.entries.retain(|w| w.strong_count() > 0);
            ring.hand = 0;
        }
        ring.entries.push(Arc::downgrade(file));
        self.open.fetch_add(1, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `op` (which opens a descriptor); if the process or the system is out of
    /// descriptors, closes every cached handle not in use right now and runs it once more.
    /// Sockets and other files share the process's descriptors with the cache, so the cache
    /// is the one holder that can give some back. An error after that is returned as is:
    /// [`is_out_of_descriptors`] tells callers that nothing was done.
    fn retry_out_of_descriptors<T>(&self, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        match op() {
            Err(e) if is_out_of_descriptors(&e) => {
                if self.shed() == 0 {
                    return Err(e);
                }
                op()
            }
            other => other,
        }
    }

    /// Closes every cached handle not in use (ignoring the CLOCK's second chance); returns
    /// how many. A handle whose file's state is locked (in use, or the caller's own) stays.
    fn shed(&self) -> usize {
        let mut ring = self.ring.lock();
        let mut closed = 0;
        ring.entries.retain(|w| {
            let Some(inner) = w.upgrade() else {
                return false;
            };
            let Some(mut st) = inner.state.try_lock() else {
                return true;
            };
            match inner.try_close(&mut st, &self.open) {
                Closed::InUse => true,
                Closed::Yes => {
                    closed += 1;
                    false
                }
                Closed::WasNot => false,
            }
        });
        ring.hand = 0;
        self.evicted.fetch_add(closed as u64, Ordering::Relaxed);
        closed
    }

    /// Closes one handle not in use and not used since the sweep last passed it. False if
    /// two sweeps found none (every handle is in use).
    fn evict_one(&self, ring: &mut Ring) -> bool {
        let mut steps = 0;
        let limit = 2 * ring.entries.len() + 2;
        while steps < limit && !ring.entries.is_empty() {
            steps += 1;
            if ring.hand >= ring.entries.len() {
                ring.hand = 0;
            }
            let i = ring.hand;
            let Some(inner) = ring.entries[i].upgrade() else {
                ring.entries.swap_remove(i);
                continue;
            };
            if inner.referenced.swap(false, Ordering::Relaxed) {
                ring.hand += 1;
                continue;
            }
            let Some(mut st) = inner.state.try_lock() else {
                ring.hand += 1;
                continue;
            };
            match inner.try_close(&mut st, &self.open) {
                Closed::InUse => ring.hand += 1,
                Closed::Yes => {
                    ring.entries.swap_remove(i);
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Closed::WasNot => {
                    ring.entries.swap_remove(i);
                }
            }
        }
        false
    }
}

/// One file of an [`FsStorage`]: opened on demand through the handle cache.
struct LazyFile {
    inner: Arc<LazyInner>,
}

/// Lock order: `state`, then `handle` (and `state`, then the cache's ring). Reads take only
/// `handle`, shared: a read of a cached handle costs an uncontended shared lock and the
/// `pread`, and never waits for an append to the same file (appends hold `state`).
///
/// *Invariant:* `handle` changes (opened or closed) only while `state` is held, so a holder
/// of `state` that saw it open may use it until it releases `state`; and it is closed only
/// with its write lock, so no read or fsync runs on a closed descriptor.
struct LazyInner {
    path: PathBuf,
    cache: Arc<HandleCache>,
    /// Set on every use; cleared by the CLOCK sweep (second chance).
    referenced: AtomicBool,
    state: Mutex<LazyState>,
    /// The open handle, if any. Held shared for the duration of each read, write and
    /// fsync, so that eviction (`try_write`) passes over a handle in use.
    handle: RwLock<Option<File>>,
}

/// What [`LazyInner::try_close`] did.
enum Closed {
    /// The handle was open and is closed now.
    Yes,
    /// No handle was open.
    WasNot,
    /// A read or fsync is using the handle: left open.
    InUse,
}

impl LazyInner {
    /// Marks the file used for the CLOCK sweep (a store only when the flag is clear, so hot
    /// files do not write the shared cache line on every read).
    fn touch(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    /// Closes the handle unless it is in use, fsyncing it first if it may hold bytes that
    /// are not durable (see the durability invariant of [`FsStorage`]). `st` is this file's
    /// locked state.
    fn try_close(&self, st: &mut LazyState, open: &AtomicUsize) -> Closed {
        let Some(mut handle) = self.handle.try_write() else {
            return Closed::InUse;
        };
        let Some(file) = handle.take() else {
            return Closed::WasNot;
        };
        if st.dirty() {
            match file.sync_data() {
                Ok(()) => {
                    st.synced = st.writes;
                    st.inherited = false;
                }
                Err(e) => {
                    st.failed.get_or_insert((e.kind(), e.to_string()));
                }
            }
        }
        drop(file);
        open.fetch_sub(1, Ordering::Relaxed);
        Closed::Yes
    }
}

struct LazyState {
    /// (device, inode) of the file when first opened: a reopen must find the same file.
    id: Option<(u64, u64)>,
    /// The append position (the log is the only writer, so tracking the end here avoids an
    /// fstat per append and lets `len` answer without a handle).
    end: u64,
    /// Writes made through this file (appends, truncations that changed its length).
    writes: u64,
    /// `writes` as of the start of the last successful fsync: this file's writes may not be
    /// durable while `writes > synced`.
    synced: u64,
    /// The file existed when opened and has not been fsynced since: an earlier process may
    /// have left bytes in the page cache that it never fsynced before it was killed, so the
    /// next `sync` must fsync even without writes of ours. Closing the handle does not need
    /// to (nothing of ours is at stake), so reading old files costs no fsync.
    inherited: bool,
    /// An fsync made when closing the handle failed: every later sync reports it.
    failed: Option<(io::ErrorKind, String)>,
}

impl LazyState {
    /// Writes of ours that may not be durable.
    fn dirty(&self) -> bool {
        self.writes > self.synced
    }

    /// Whether a `sync` has anything to do.
    fn needs_sync(&self) -> bool {
        self.dirty() || self.inherited
    }
}

impl Drop for LazyInner {
    fn drop(&mut self) {
        // The last reference is gone: nobody can sync this file any more, so closing without
        // fsync loses nothing a caller could still be promised (the bytes stay in the page
        // cache and are written back by the kernel).
        if self.handle.get_mut().take().is_some() {
            self.cache.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

impl LazyFile {
    /// The open handle, held shared, opening it (and making room for it) first if needed.
    /// `st` is this file's locked state: while the caller holds it the handle stays open.
    fn handle<'a>(&'a self, st: &mut LazyState) -> io::Result<MappedRwLockReadGuard<'a, File>> {
        let inner = &self.inner;
        inner.touch();
        if inner.handle.read().is_none() {
            self.open_handle(st)?;
        }
        RwLockReadGuard::try_map(inner.handle.read(), Option::as_ref)
            .map_err(|_| io::Error::other("handle closed while its state was held"))
    }

    /// Opens the handle (closed now; `st` locked) and records it in the cache.
    fn open_handle(&self, st: &mut LazyState) -> io::Result<()> {
        let inner = &self.inner;
        let file = inner.cache.retry_out_of_descriptors(|| {
            OpenOptions::new().read(true).write(true).open(&inner.path)
        })?;
        let id = file_id(&file.metadata()?);
        if st.id.is_some_and(|old| old != id) {
            return Err(io::Error::other(format!(
                "{} was replaced while the log held it",
                inner.path.display()
            )));
        }
        st.id = Some(id);
        inner.cache.admit(inner);
        *inner.handle.write() = Some(file);
        Ok(())
    }
}

impl Storage for FsStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        let entries = self
            .cache
            .retry_out_of_descriptors(|| std::fs::read_dir(path))?;
        for entry in entries {
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
        Ok(Box::new(self.open_lazy(path, create)?))
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
        self.cache
            .retry_out_of_descriptors(|| File::open(path))?
            .sync_all()
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    /// `syncfs(2)` of `path`'s file system: every dirty page and all metadata of that file
    /// system are written and the journal committed. Writeback errors of any file there since
    /// `path` was opened here are reported (Linux 5.8 and later); earlier ones were reported
    /// to the fsyncs of their own files.
    fn sync_all(&self, path: &Path) -> io::Result<()> {
        let dir = self.cache.retry_out_of_descriptors(|| File::open(path))?;
        nix::unistd::syncfs(&dir).map_err(io::Error::from)
    }
}

impl FsStorage {
    fn open_lazy(&self, path: &Path, create: bool) -> io::Result<LazyFile> {
        let inner = Arc::new(LazyInner {
            path: path.to_path_buf(),
            cache: self.cache.clone(),
            referenced: AtomicBool::new(true),
            handle: RwLock::new(None),
            state: Mutex::new(LazyState {
                id: None,
                end: 0,
                writes: 0,
                synced: 0,
                inherited: false,
                failed: None,
            }),
        });
        if create {
            // Created files are about to be written: keep the handle.
            let file = self.cache.retry_out_of_descriptors(|| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
            })?;
            let meta = file.metadata()?;
            let mut st = inner.state.lock();
            st.end = meta.len();
            st.id = Some(file_id(&meta));
            self.cache.admit(&inner);
            *inner.handle.write() = Some(file);
        } else {
            // An existing file costs no handle until it is read or written.
            let meta = std::fs::metadata(path)?;
            if !meta.is_file() {
                return Err(io::Error::other(format!(
                    "{} is not a file",
                    path.display()
                )));
            }
            let mut st = inner.state.lock();
            st.end = meta.len();
            st.id = Some(file_id(&meta));
            st.inherited = true;
        }
        Ok(LazyFile { inner })
    }
}

impl StorageFile for LazyFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.inner.state.lock().end)
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        // Hit: the shared handle and one pread, no state lock (appends continue meanwhile;
        // the log reads only bytes it has appended, so no length check is needed here).
        {
            let handle = self.inner.handle.read();
            if let Some(file) = handle.as_ref() {
                self.inner.touch();
                return file.read_exact_at(buf, pos);
            }
        }
        // Miss: open under the state lock (which keeps the handle open while held).
        let mut st = self.inner.state.lock();
        let file = self.handle(&mut st)?;
        file.read_exact_at(buf, pos)
    }

    fn append(&self, data: &[u8]) -> io::Result<u64> {
        let mut st = self.inner.state.lock();
        let file = self.handle(&mut st)?;
        let pos = st.end;
        st.writes += 1;
        if let Err(e) = file.write_all_at(data, pos) {
            // A partial write may have extended the file; re-read the real length so the next
            // append does not leave a hole (the log poisons itself on write errors anyway).
            if let Ok(meta) = file.metadata() {
                st.end = meta.len();
            }
            return Err(e);
        }
        st.end = pos + data.len() as u64;
        Ok(pos)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut st = self.inner.state.lock();
        if len == st.end {
            // Nothing changes (e.g. a file just created empty), so nothing needs syncing.
            return Ok(());
        }
        let file = self.handle(&mut st)?;
        st.writes += 1;
        file.set_len(len)?;
        st.end = len;
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        // The lock is not held during the fsync: appends to the file continue meanwhile (the
        // log's group commit depends on it), and only the writes made before it started are
        // counted as synced.
        let (file, writes) = {
            let mut st = self.inner.state.lock();
            if let Some((kind, msg)) = &st.failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            // Clean: nothing written since the last sync, and a closed handle was fsynced
            // when it was closed (see the durability invariant).
            if !st.needs_sync() {
                return Ok(());
            }
            // The shared guard outlives the state lock: eviction passes over the handle
            // while it is being fsynced.
            (self.handle(&mut st)?, st.writes)
        };
        file.sync_data()?;
        drop(file);
        let mut st = self.inner.state.lock();
        st.synced = st.synced.max(writes);
        st.inherited = false;
        Ok(())
    }

    fn sync_error(&self) -> Option<io::Error> {
        let st = self.inner.state.lock();
        st.failed
            .as_ref()
            .map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
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
    /// Fault injection: the next `n` file operations (read, append, truncate, sync) fail with
    /// EMFILE before touching the file, as [`FsStorage`] does when a handle it closed cannot
    /// be reopened because the process is out of file descriptors.
    fail_handles: usize,
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

    /// Makes the next `n` file operations (read, append, truncate, sync) fail with EMFILE
    /// without touching the file (see [`is_out_of_descriptors`]).
    pub fn fail_next_handles(&self, n: usize) {
        self.state.lock().fail_handles = n;
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

    fn sync_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.fail_syncs > 0 {
            st.fail_syncs -= 1;
            return Err(io::Error::other("injected fsync failure"));
        }
        st.file_syncs += 1;
        let below: Vec<(PathBuf, Inode)> = st
            .files
            .iter()
            .filter(|(p, _)| p.starts_with(path))
            .map(|(p, i)| (p.clone(), i.clone()))
            .collect();
        for (_, inode) in &below {
            let mut i = inode.lock();
            i.durable = i.written.clone();
        }
        st.durable_files.retain(|p, _| !p.starts_with(path));
        st.durable_files.extend(below);
        Ok(())
    }
}

impl MemFile {
    /// The injected EMFILE of [`MemStorage::fail_next_handles`], if one is due.
    fn handle_fault(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.fail_handles > 0 {
            st.fail_handles -= 1;
            return Err(io::Error::from_raw_os_error(
                nix::errno::Errno::EMFILE as i32,
            ));
        }
        Ok(())
    }
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.inode.lock().written.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.handle_fault()?;
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
        self.handle_fault()?;
        let mut inode = self.inode.lock();
        let pos = inode.written.len() as u64;
        inode.written.extend_from_slice(data);
        Ok(pos)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.handle_fault()?;
        let mut inode = self.inode.lock();
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        inode.written.resize(len, 0);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.handle_fault()?;
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
    fn fs_cache_bounds_open_handles_and_keeps_contents() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::with_max_open_files(4);
        let files: Vec<Box<dyn StorageFile>> = (0..20)
            .map(|i| s.open(&dir.path().join(format!("f{i}")), true).unwrap())
            .collect();
        assert!(s.open_files() <= 4, "{}", s.open_files());
        for round in 0..3u8 {
            for (i, f) in files.iter().enumerate() {
                f.append(&[round, i as u8]).unwrap();
                assert!(s.open_files() <= 4, "{}", s.open_files());
            }
        }
        for (i, f) in files.iter().enumerate() {
            let mut buf = [0u8; 6];
            f.read_at(&mut buf, 0).unwrap();
            assert_eq!(buf, [0, i as u8, 1, i as u8, 2, i as u8]);
            assert_eq!(f.len().unwrap(), 6);
            f.sync().unwrap();
        }
        let (opened, evicted) = s.handle_counts();
        assert!(opened > 20 && evicted > 16, "{opened} {evicted}");
        // An existing file costs no handle until it is used; dropping files closes theirs.
        let again = s.open(&dir.path().join("f3"), false).unwrap();
        assert_eq!(again.len().unwrap(), 6);
        drop(files);
        assert_eq!(s.open_files(), 0);
        let mut buf = [0u8; 2];
        again.read_at(&mut buf, 4).unwrap();
        assert_eq!(buf, [2, 3]);
        assert_eq!(s.open_files(), 1);
        assert!(s.open(&dir.path().join("missing"), false).is_err());
    }

    #[test]
    fn fs_evicted_handle_was_synced_and_reopens_only_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::with_max_open_files(1);
        let a = s.open_lazy(&dir.path().join("a"), true).unwrap();
        a.append(b"acked").unwrap();
        assert!(a.inner.state.lock().dirty());
        // Opening another file closes a's handle, fsyncing its unsynced write first.
        let b = s.open_lazy(&dir.path().join("b"), true).unwrap();
        {
            let st = a.inner.state.lock();
            assert!(
                a.inner.handle.read().is_none() && !st.dirty(),
                "closed and clean"
            );
        }
        // So a sync of a needs no handle.
        a.sync().unwrap();
        assert!(a.inner.handle.read().is_none());
        // A file that existed when opened may hold an earlier process's unsynced bytes: its
        // first sync fsyncs it, but closing its handle does not need to.
        let c = s.open_lazy(&dir.path().join("a"), false).unwrap();
        assert!(c.inner.state.lock().needs_sync() && !c.inner.state.lock().dirty());
        c.sync().unwrap();
        assert!(!c.inner.state.lock().needs_sync());
        // Replaced behind the handle's back: a reopen refuses the other file.
        b.append(b"x").unwrap();
        std::fs::write(dir.path().join("other"), b"other").unwrap();
        std::fs::rename(dir.path().join("other"), dir.path().join("a")).unwrap();
        let mut buf = [0u8; 5];
        let err = a.read_at(&mut buf, 0).unwrap_err();
        assert!(err.to_string().contains("replaced"), "{err}");
    }

    #[test]
    fn fs_cached_read_does_not_wait_for_the_files_state() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::with_max_open_files(4);
        let f = Arc::new(s.open_lazy(&dir.path().join("a"), true).unwrap());
        f.append(b"abc").unwrap();
        // An append in progress holds the state: a read of the cached handle goes past it.
        let st = f.inner.state.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        let g = f.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 3];
            tx.send(g.read_at(&mut buf, 0).map(|()| buf)).unwrap();
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        drop(st);
        assert_eq!(
            got.expect("read waited for the state lock").unwrap(),
            *b"abc"
        );
    }

    #[test]
    fn fs_cache_is_shared_by_threads() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::with_max_open_files(8);
        let files: Vec<Box<dyn StorageFile>> = (0..64)
            .map(|i| s.open(&dir.path().join(format!("f{i}")), true).unwrap())
            .collect();
        std::thread::scope(|scope| {
            for t in 0..4usize {
                let files = &files;
                scope.spawn(move || {
                    for round in 0..50u8 {
                        for f in files.iter().skip(t).step_by(4) {
                            f.append(&[round]).unwrap();
                            if round % 10 == 0 {
                                f.sync().unwrap();
                            }
                        }
                    }
                });
            }
        });
        // At most one handle over the bound per thread that was inside an operation.
        assert!(s.open_files() <= 8 + 4, "{}", s.open_files());
        for f in &files {
            let mut buf = vec![0u8; 50];
            f.read_at(&mut buf, 0).unwrap();
            assert_eq!(buf, (0..50u8).collect::<Vec<_>>());
        }
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
