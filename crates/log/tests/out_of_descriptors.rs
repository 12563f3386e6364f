//! [`FsStorage`] when the process runs out of file descriptors (EMFILE), with a real
//! `RLIMIT_NOFILE`. Its own test binary: lowering the limit affects the whole process, so no
//! other test may run beside it.

use std::fs::File;
use std::os::unix::fs::FileExt;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use waterline_log::storage::is_out_of_descriptors;
use waterline_log::{FsStorage, Storage, StorageFile};

/// Descriptors this process has open now.
fn open_descriptors() -> u64 {
    // The directory handle of read_dir is one of them.
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64 - 1
}

/// Opens /dev/null until the process is out of descriptors (as sockets would).
fn take_every_free_descriptor() -> Vec<File> {
    let mut hogs = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => hogs.push(f),
            Err(e) => {
                assert!(is_out_of_descriptors(&e), "{e}");
                return hogs;
            }
        }
    }
}

#[test]
fn cache_gives_descriptors_back_and_fails_alone_when_none_are_left() {
    let dir = tempfile::tempdir().unwrap();
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let limit = open_descriptors() + 16;
    setrlimit(Resource::RLIMIT_NOFILE, limit, hard).unwrap();

    // The cache's own bound is far above the limit: only the retry after EMFILE (closing
    // cached handles) keeps 64 files usable under 16 free descriptors.
    let s = FsStorage::with_max_open_files(10_000);
    let files: Vec<Box<dyn StorageFile>> = (0..64)
        .map(|i| s.open(&dir.path().join(format!("f{i}")), true).unwrap())
        .collect();
    for round in 0..3u8 {
        for (i, f) in files.iter().enumerate() {
            f.append(&[round, i as u8]).unwrap();
        }
    }
    s.sync_dir(dir.path()).unwrap();
    for (i, f) in files.iter().enumerate() {
        let mut buf = [0u8; 6];
        f.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0, i as u8, 1, i as u8, 2, i as u8]);
        f.sync().unwrap();
    }
    assert!(s.open_files() <= 16, "{}", s.open_files());
    let (_, evicted) = s.handle_counts();
    assert!(evicted > 0);

    // Something else takes every free descriptor: the cache still holds some, gives them
    // back, and the read succeeds.
    let mut hogs = take_every_free_descriptor();
    let mut buf = [0u8; 2];
    files[0].read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [0, 0]);

    // The cache holds nothing (its files dropped) and no descriptor is free: the operation
    // fails with EMFILE, nothing else breaks, and it succeeds once a descriptor is free.
    drop(files);
    assert_eq!(s.open_files(), 0);
    hogs.extend(take_every_free_descriptor());
    let f = s.open(&dir.path().join("f1"), false).unwrap();
    let err = f.read_at(&mut buf, 0).unwrap_err();
    assert!(is_out_of_descriptors(&err), "{err}");
    let err = f.append(b"x").unwrap_err();
    assert!(is_out_of_descriptors(&err), "{err}");
    assert!(is_out_of_descriptors(&s.sync_dir(dir.path()).unwrap_err()));
    hogs.pop();
    f.read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [0, 1]);
    assert_eq!(f.len().unwrap(), 6, "the failed append wrote nothing");
    drop(hogs);
    let mut all = [0u8; 6];
    File::open(dir.path().join("f1"))
        .unwrap()
        .read_exact_at(&mut all, 0)
        .unwrap();
    assert_eq!(all, [0, 1, 1, 1, 2, 1]);
}
