//! The on-disk share store of a storage server.
//!
//! Layout under the store's root:
//!
//! ```text
//! shares/<first 2 chars of SI>/<SI in base32>/<share number>   finished shares
//! incoming/<SI in base32>.<share number>.<random>              shares being written
//! corrupt/<SI in base32>.<share number>.<random>               quarantined shares
//! format                                                       "grapevine share store <version>"
//! ```
//!
//! The `format` file names the layout's version ([`STORE_FORMAT`]). A
//! store without one is a new store, or one written before the file
//! existed (the same layout), and gets one. A store whose format is newer
//! than this release knows is refused at [`ShareStore::open`] before
//! anything in it is read, removed or written: an older release never
//! touches a newer release's store.
//!
//! A share is written once: [`ShareStore::allocate`] reserves its announced
//! size, [`ShareWriter::write_at`] fills it (never past the announced size),
//! [`ShareWriter::close`] fsyncs the temporary file, renames it into place
//! and fsyncs the directory. Readers never see a partial share: until the
//! rename, it lives only under `incoming/`, which is emptied at startup.
//! Each finished share ends with a 16-byte XXH3-128 checksum of its
//! contents, checked when the whole share is read, so a share corrupted on
//! disk is detected and moved to `corrupt/` instead of being served. The
//! checksum guards against the disk, not against people: a server can
//! always rewrite its own files, which is why readers check every block
//! against the BLAKE3 hashes under the capability. A non-cryptographic
//! checksum does that job at several times BLAKE3's speed, on the upload's
//! hot path.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::StoreError;
use crate::types::StorageIndex;

/// Largest share accepted (a share holds 1/k of a file plus hashes).
pub const MAX_SHARE_SIZE: u64 = 64 << 30;
/// Largest number of shares of one file.
pub const MAX_SHARES: u16 = 256;
/// The on-disk layout's version, in the store's `format` file.
pub const STORE_FORMAT: u32 = 1;
const FORMAT_FILE: &str = "format";
const FORMAT_PREFIX: &str = "grapevine share store ";
const TRAILER: u64 = 16;

/// Space accounting shared by a store and its writers.
#[derive(Debug, Default)]
struct Space {
    /// Bytes promised to writers not yet closed.
    reserved: AtomicU64,
}

/// The share store of one node.
#[derive(Debug, Clone)]
pub struct ShareStore {
    root: PathBuf,
    reserve: u64,
    space: Arc<Space>,
    #[cfg(any(test, feature = "test-util"))]
    free_override: Option<Arc<AtomicU64>>,
}

/// A share being written.
pub struct ShareWriter {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    size: u64,
    written: u64,
    hasher: xxhash_rust::xxh3::Xxh3,
    space: Arc<Space>,
    done: bool,
}

impl std::fmt::Debug for ShareWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareWriter")
            .field("tmp", &self.tmp)
            .field("size", &self.size)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| {
        if e.raw_os_error() == Some(28) {
            StoreError::DiskFull(path.display().to_string())
        } else {
            StoreError::Io(path.display().to_string(), e)
        }
    }
}

fn check_shnum(shnum: u16) -> Result<(), StoreError> {
    if shnum >= MAX_SHARES {
        return Err(StoreError::BadShareNumber(shnum));
    }
    Ok(())
}

impl ShareStore {
    /// Open (creating if needed) a store under `root`, keeping `reserve`
    /// bytes of the filesystem free. Leftover partial shares from a crash are
    /// removed.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedFormat`] if a newer release wrote the store
    /// (nothing is touched then); [`StoreError::Io`] if the directories
    /// cannot be created.
    pub fn open(root: &Path, reserve: u64) -> Result<Self, StoreError> {
        check_format(root)?;
        for d in ["shares", "incoming", "corrupt"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io(&p))?;
        }
        let incoming = root.join("incoming");
        for e in fs::read_dir(&incoming).map_err(io(&incoming))?.flatten() {
            tracing::info!(path = %e.path().display(), "removing partial share left by a crash");
            let _ = fs::remove_file(e.path());
        }
        Ok(ShareStore {
            root: root.to_path_buf(),
            reserve,
            space: Arc::new(Space::default()),
            #[cfg(any(test, feature = "test-util"))]
            free_override: None,
        })
    }

    /// For tests: pretend the filesystem has `free` bytes available.
    #[cfg(any(test, feature = "test-util"))]
    pub fn with_free_space_override(mut self, free: Arc<AtomicU64>) -> Self {
        self.free_override = Some(free);
        self
    }

    /// Free bytes on the store's filesystem.
    fn free_space(&self) -> Result<u64, StoreError> {
        #[cfg(any(test, feature = "test-util"))]
        if let Some(f) = &self.free_override {
            return Ok(f.load(Ordering::Relaxed));
        }
        fs4::available_space(&self.root).map_err(io(&self.root))
    }

    fn si_dir(&self, si: &StorageIndex) -> PathBuf {
        let s = si.to_string();
        self.root.join("shares").join(&s[..2]).join(&s)
    }

    fn share_path(&self, si: &StorageIndex, shnum: u16) -> PathBuf {
        self.si_dir(si).join(shnum.to_string())
    }

    /// Bytes available to new shares: free space, less the configured
    /// reserve, less what open writers were promised.
    ///
    /// # Errors
    /// [`StoreError::Io`] if the filesystem cannot be queried.
    pub fn available(&self) -> Result<u64, StoreError> {
        let free = self.free_space()?;
        Ok(free
            .saturating_sub(self.reserve)
            .saturating_sub(self.space.reserved.load(Ordering::Relaxed)))
    }

    /// Start writing share `shnum` of `si`, announcing its `size`.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the share is stored,
    /// [`StoreError::NoSpace`] if `size` does not fit,
    /// [`StoreError::BadShareNumber`] / [`StoreError::TooLarge`] for bad
    /// arguments. Nothing is written on error.
    pub fn allocate(
        &self,
        si: &StorageIndex,
        shnum: u16,
        size: u64,
    ) -> Result<ShareWriter, StoreError> {
        check_shnum(shnum)?;
        if size == 0 || size > MAX_SHARE_SIZE {
            return Err(StoreError::TooLarge(size));
        }
        let dest = self.share_path(si, shnum);
        if dest.exists() {
            return Err(StoreError::AlreadyExists);
        }
        let need = size + TRAILER;
        if self.available()? < need {
            return Err(StoreError::NoSpace {
                need,
                available: self.available()?,
            });
        }
        self.space.reserved.fetch_add(need, Ordering::Relaxed);
        let tmp = self
            .root
            .join("incoming")
            .join(format!("{si}.{shnum}.{:016x}", rand_suffix()));
        let file = match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => f,
            Err(e) => {
                self.space.reserved.fetch_sub(need, Ordering::Relaxed);
                return Err(io(&tmp)(e));
            }
        };
        Ok(ShareWriter {
            file,
            tmp,
            dest,
            size,
            written: 0,
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            space: self.space.clone(),
            done: false,
        })
    }

    /// Bytes of finished shares held (walks the store; meant for status and
    /// metrics, not hot paths).
    pub fn stored_bytes(&self) -> u64 {
        let mut total = 0;
        let mut stack = vec![self.root.join("shares")];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                    Err(_) => {}
                }
            }
        }
        total
    }

    /// Share numbers of `si` held here.
    ///
    /// # Errors
    /// [`StoreError::Io`] on a read failure.
    pub fn list(&self, si: &StorageIndex) -> Result<Vec<u16>, StoreError> {
        let dir = self.si_dir(si);
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&dir)(e)),
        };
        for e in rd.flatten() {
            if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u16>().ok()) {
                if n < MAX_SHARES {
                    out.push(n);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Size of a stored share (without its trailer).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or [`StoreError::Io`].
    pub fn share_size(&self, si: &StorageIndex, shnum: u16) -> Result<u64, StoreError> {
        check_shnum(shnum)?;
        let p = self.share_path(si, shnum);
        let len = fs::metadata(&p)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    StoreError::NotFound
                } else {
                    io(&p)(e)
                }
            })?
            .len();
        len.checked_sub(TRAILER).ok_or(StoreError::Corrupt)
    }

    /// Read `len` bytes at `offset` of a stored share. Reading the whole
    /// share checks its hash; a mismatch moves the share to `corrupt/`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::OutOfRange`],
    /// [`StoreError::Corrupt`] or [`StoreError::Io`].
    pub fn read(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let size = self.share_size(si, shnum)?;
        let end = offset.checked_add(len).ok_or(StoreError::OutOfRange)?;
        if end > size {
            return Err(StoreError::OutOfRange);
        }
        let p = self.share_path(si, shnum);
        let mut f = File::open(&p).map_err(io(&p))?;
        if offset == 0 && len == size {
            let mut all = Vec::with_capacity(size as usize + TRAILER as usize);
            f.read_to_end(&mut all).map_err(io(&p))?;
            let (data, trailer) = all.split_at(size as usize);
            if xxhash_rust::xxh3::xxh3_128(data).to_le_bytes() != trailer {
                self.quarantine(si, shnum);
                return Err(StoreError::Corrupt);
            }
            all.truncate(size as usize);
            return Ok(all);
        }
        f.seek(SeekFrom::Start(offset)).map_err(io(&p))?;
        // Read into spare capacity: no zeroing of a buffer about to be filled.
        let mut buf = Vec::with_capacity(len as usize);
        (&mut f).take(len).read_to_end(&mut buf).map_err(io(&p))?;
        if buf.len() as u64 != len {
            return Err(StoreError::OutOfRange);
        }
        Ok(buf)
    }

    /// Check a stored share against its trailer hash, quarantining it if
    /// corrupt.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`], [`StoreError::NotFound`] or [`StoreError::Io`].
    pub fn verify(&self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError> {
        let size = self.share_size(si, shnum)?;
        self.read(si, shnum, 0, size).map(|_| ())
    }

    fn quarantine(&self, si: &StorageIndex, shnum: u16) {
        let from = self.share_path(si, shnum);
        let to = self
            .root
            .join("corrupt")
            .join(format!("{si}.{shnum}.{:016x}", rand_suffix()));
        tracing::warn!(%si, shnum, "share failed its hash check; moved to {}", to.display());
        let _ = fs::rename(&from, &to);
    }
}

/// Refuse a store written by a newer release; give a store without a
/// `format` file (new, or older than the file) the current one.
fn check_format(root: &Path) -> Result<(), StoreError> {
    let path = root.join(FORMAT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let version = text
                .trim_end()
                .strip_prefix(FORMAT_PREFIX)
                .and_then(|v| v.parse::<u32>().ok());
            match version {
                Some(v) if v <= STORE_FORMAT => Ok(()),
                _ => Err(StoreError::UnsupportedFormat {
                    path: root.display().to_string(),
                    found: text.trim_end().chars().take(64).collect(),
                    supported: STORE_FORMAT,
                }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(root).map_err(io(root))?;
            // Written whole or not at all: temporary file, fsync, rename,
            // fsync the directory.
            let tmp = root.join(format!("{FORMAT_FILE}.{:016x}", rand_suffix()));
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(format!("{FORMAT_PREFIX}{STORE_FORMAT}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io(&tmp))?;
            fs::rename(&tmp, &path).map_err(io(&path))?;
            File::open(root)
                .and_then(|d| d.sync_all())
                .map_err(io(root))
        }
        Err(e) => Err(io(&path)(e)),
    }
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    // Uniqueness only; not security relevant.
    getrandom::fill(&mut b).unwrap_or(());
    u64::from_le_bytes(b) ^ std::process::id() as u64
}

impl ShareWriter {
    /// Write `data` at `offset`.
    ///
    /// # Errors
    /// [`StoreError::BeyondAllocation`] if it would pass the announced size,
    /// [`StoreError::NotSequential`] if it leaves a gap or overlaps (shares
    /// are written in order), [`StoreError::DiskFull`] / [`StoreError::Io`].
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(StoreError::BeyondAllocation)?;
        if end > self.size {
            return Err(StoreError::BeyondAllocation);
        }
        if offset != self.written {
            return Err(StoreError::NotSequential {
                expected: self.written,
                got: offset,
            });
        }
        self.file.write_all(data).map_err(io(&self.tmp))?;
        self.hasher.update(data);
        self.written = end;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Finish: append the hash, fsync, rename into place, fsync the
    /// directory. Only after this returns is the share acknowledged.
    ///
    /// # Errors
    /// [`StoreError::Incomplete`] if fewer bytes than announced were written;
    /// [`StoreError::AlreadyExists`] if another writer finished the same
    /// share first; I/O errors. On error nothing becomes visible.
    pub fn close(mut self) -> Result<(), StoreError> {
        if self.written != self.size {
            return Err(StoreError::Incomplete {
                written: self.written,
                size: self.size,
            });
        }
        let sum = self.hasher.digest128().to_le_bytes();
        self.file.write_all(&sum).map_err(io(&self.tmp))?;
        self.file.sync_all().map_err(io(&self.tmp))?;
        let dir = self
            .dest
            .parent()
            .expect("share path has a parent")
            .to_path_buf();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        if self.dest.exists() {
            return Err(StoreError::AlreadyExists);
        }
        fs::rename(&self.tmp, &self.dest).map_err(io(&self.dest))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for ShareWriter {
    fn drop(&mut self) {
        self.space
            .reserved
            .fetch_sub(self.size + TRAILER, Ordering::Relaxed);
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::types::SI_LEN;

    fn si(b: u8) -> StorageIndex {
        StorageIndex([b; SI_LEN])
    }

    /// The compatibility rule for the store: a new store is marked with
    /// this release's format; a store marked with a newer one is refused
    /// and left exactly as it was (even its unfinished uploads).
    #[test]
    fn store_format_is_written_and_a_newer_one_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        ShareStore::open(dir.path(), 0).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("format")).unwrap(),
            "grapevine share store 1\n"
        );
        // Reopening a store of this format is fine.
        ShareStore::open(dir.path(), 0).unwrap();
        // A newer release's store, with an upload in progress.
        fs::write(dir.path().join("format"), "grapevine share store 2\n").unwrap();
        fs::write(dir.path().join("incoming").join("x.0.1"), b"partial").unwrap();
        assert!(matches!(
            ShareStore::open(dir.path(), 0),
            Err(StoreError::UnsupportedFormat { supported: 1, .. })
        ));
        assert!(dir.path().join("incoming").join("x.0.1").exists());
        // Garbage is refused too, not taken for a format.
        fs::write(dir.path().join("format"), "something else").unwrap();
        assert!(matches!(
            ShareStore::open(dir.path(), 0),
            Err(StoreError::UnsupportedFormat { .. })
        ));
    }

    #[test]
    fn write_once_then_read_by_range_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let s = ShareStore::open(dir.path(), 0).unwrap();
        let mut w = s.allocate(&si(1), 3, 10).unwrap();
        w.write_at(0, b"hello").unwrap();
        w.write_at(5, b"world").unwrap();
        assert!(
            s.list(&si(1)).unwrap().is_empty(),
            "not visible before close"
        );
        w.close().unwrap();
        assert_eq!(s.list(&si(1)).unwrap(), vec![3]);
        assert_eq!(s.stored_bytes(), 10 + TRAILER);
        assert_eq!(s.read(&si(1), 3, 0, 10).unwrap(), b"helloworld");
        assert_eq!(s.read(&si(1), 3, 2, 4).unwrap(), b"llow");
        assert!(matches!(
            s.read(&si(1), 3, 8, 4),
            Err(StoreError::OutOfRange)
        ));
        assert!(matches!(
            s.allocate(&si(1), 3, 10),
            Err(StoreError::AlreadyExists)
        ));
        assert!(matches!(s.read(&si(2), 0, 0, 1), Err(StoreError::NotFound)));
    }

    #[test]
    fn refuses_writes_past_allocation_gaps_and_short_closes() {
        let dir = tempfile::tempdir().unwrap();
        let s = ShareStore::open(dir.path(), 0).unwrap();
        let mut w = s.allocate(&si(1), 0, 4).unwrap();
        assert!(matches!(
            w.write_at(0, b"12345"),
            Err(StoreError::BeyondAllocation)
        ));
        assert!(matches!(
            w.write_at(1, b"2"),
            Err(StoreError::NotSequential { .. })
        ));
        w.write_at(0, b"12").unwrap();
        assert!(matches!(
            w.close(),
            Err(StoreError::Incomplete {
                written: 2,
                size: 4
            })
        ));
        assert!(s.list(&si(1)).unwrap().is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join("incoming")).unwrap().count(),
            0
        );
        assert!(matches!(
            s.allocate(&si(1), 300, 4),
            Err(StoreError::BadShareNumber(300))
        ));
        assert!(matches!(
            s.allocate(&si(1), 1, 0),
            Err(StoreError::TooLarge(0))
        ));
    }

    #[test]
    fn full_disk_is_a_clear_error_and_reservations_count() {
        let dir = tempfile::tempdir().unwrap();
        let free = Arc::new(AtomicU64::new(1000));
        let s = ShareStore::open(dir.path(), 100)
            .unwrap()
            .with_free_space_override(free.clone());
        let w = s.allocate(&si(1), 0, 500).unwrap();
        // 1000 - 100 reserve - 532 promised = 368 left.
        assert!(matches!(
            s.allocate(&si(1), 1, 400),
            Err(StoreError::NoSpace { .. })
        ));
        drop(w);
        s.allocate(&si(1), 1, 400).unwrap();
    }

    #[test]
    fn corrupt_share_is_detected_and_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let s = ShareStore::open(dir.path(), 0).unwrap();
        let mut w = s.allocate(&si(7), 0, 8).unwrap();
        w.write_at(0, b"12345678").unwrap();
        w.close().unwrap();
        let p = s.share_path(&si(7), 0);
        let mut bytes = fs::read(&p).unwrap();
        bytes[3] ^= 0xff;
        fs::write(&p, bytes).unwrap();
        assert!(matches!(s.verify(&si(7), 0), Err(StoreError::Corrupt)));
        assert!(
            s.list(&si(7)).unwrap().is_empty(),
            "quarantined, never served again"
        );
        assert_eq!(fs::read_dir(dir.path().join("corrupt")).unwrap().count(), 1);
    }

    #[test]
    fn partial_shares_from_a_crash_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let s = ShareStore::open(dir.path(), 0).unwrap();
        let mut w = s.allocate(&si(9), 0, 8).unwrap();
        w.write_at(0, b"1234").unwrap();
        std::mem::forget(w); // the process dies mid-write
        assert_eq!(
            fs::read_dir(dir.path().join("incoming")).unwrap().count(),
            1
        );
        let s = ShareStore::open(dir.path(), 0).unwrap();
        assert_eq!(
            fs::read_dir(dir.path().join("incoming")).unwrap().count(),
            0
        );
        assert!(s.list(&si(9)).unwrap().is_empty());
    }
}
