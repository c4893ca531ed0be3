//! The store itself: [`ShareStore`] (opening, locking, the format file,
//! the layout's paths, space figures, reading, verifying, quarantine) and
//! what its parts share ([`Inner`]). The other modules of `store` add to
//! it: `writer` allocation and writing, `check` the full check a reader's
//! report gets, `delete`, `slot` and `scrub`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
#[cfg(any(test, feature = "test-util"))]
use std::sync::{atomic::AtomicU64, atomic::Ordering, OnceLock};

use crate::store::durable;
#[cfg(any(test, feature = "test-util"))]
use crate::store::hooks::Hook;
use crate::store::hooks::{self, Point};
use crate::store::space::{self, SpaceFigures};
use crate::types::MAX_SHARES;

use crate::error::StoreError;
use crate::types::StorageIndex;

/// The on-disk layout's version, in the store's `format` file.
pub const STORE_FORMAT: u32 = 1;
const FORMAT_FILE: &str = "format";
const FORMAT_PREFIX: &str = "grapevine share store ";
const LOCK_FILE: &str = "lock";
/// Bytes of checksum after each share's contents.
pub(crate) const TRAILER: u64 = 16;
/// Bytes read at a time when a whole share is streamed.
pub(crate) const CHUNK: usize = 1 << 20;
/// How a store is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreConfig {
    /// Free bytes of the filesystem never used for shares.
    pub reserve: u64,
    /// Bytes the node offers the grid: used plus reserved never exceed it
    /// (`None`: only the disk limits the store).
    pub capacity: Option<u64>,
    /// Write a share's pages back to disk and drop them from the page cache
    /// every this many bytes written (`None`: only at close). A small
    /// board's memory cgroup is charged for dirty pages, which it cannot
    /// reclaim until they are written; the node sets this from its memory
    /// budget.
    pub writeback: Option<u64>,
}

/// What a store shares between its clones and its writers.
pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) cfg: StoreConfig,
    pub(crate) space: space::Space,
    pub(crate) hooks: hooks::Hooks,
    pub(crate) known: durable::KnownDirs,
    /// Held (locked) as long as the store is open.
    _lock: File,
    pub(crate) recent_good:
        std::sync::Mutex<std::collections::VecDeque<((StorageIndex, u16), std::time::Instant)>>,
    pub(crate) slot_lock: std::sync::Mutex<()>,
    #[cfg(any(test, feature = "test-util"))]
    free_override: OnceLock<Arc<AtomicU64>>,
}

/// The share store of one node. Clones share one store (and its lock).
#[derive(Clone)]
pub struct ShareStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ShareStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareStore")
            .field("root", &self.inner.root)
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| {
        if e.raw_os_error() == Some(28) {
            StoreError::DiskFull(path.display().to_string())
        } else {
            StoreError::Io(path.display().to_string(), e)
        }
    }
}

pub(crate) fn check_shnum(shnum: u16) -> Result<(), StoreError> {
    if shnum >= MAX_SHARES {
        return Err(StoreError::BadShareNumber(shnum));
    }
    Ok(())
}

pub(crate) fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    // Uniqueness only; not security relevant.
    getrandom::fill(&mut b).unwrap_or(());
    u64::from_le_bytes(b) ^ std::process::id() as u64
}

/// Bytes of files under `dir`, walked once (at open).
fn walk_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => total = total.saturating_add(e.metadata().map(|m| m.len()).unwrap_or(0)),
                Err(_) => {}
            }
        }
    }
    total
}

impl ShareStore {
    /// Open (creating if needed) a store under `root`, keeping `reserve`
    /// bytes of the filesystem free, with no capacity limit.
    ///
    /// # Errors
    /// As [`ShareStore::open_with`].
    pub fn open(root: &Path, reserve: u64) -> Result<Self, StoreError> {
        ShareStore::open_with(
            root,
            StoreConfig {
                reserve,
                capacity: None,
                writeback: None,
            },
        )
    }

    /// Open (creating if needed) a store under `root`. Partial shares left
    /// by a crash are removed; the bytes stored are counted (one walk).
    ///
    /// # Errors
    /// [`StoreError::UnsupportedFormat`] if a newer release wrote the store
    /// and [`StoreError::Locked`] if another process (or open) holds it:
    /// nothing is touched then. [`StoreError::Io`] if the directories
    /// cannot be created.
    pub fn open_with(root: &Path, cfg: StoreConfig) -> Result<Self, StoreError> {
        let has_format = read_format(root)?;
        let hooks = hooks::Hooks::default();
        if !root.exists() {
            fs::create_dir_all(root).map_err(io_err(root))?;
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                durable::fsync_dir(&hooks, parent).map_err(io_err(parent))?;
            }
        }
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let locked = fs4::fs_std::FileExt::try_lock_exclusive(&lock).map_err(io_err(&lock_path))?;
        if !locked {
            return Err(StoreError::Locked(root.display().to_string()));
        }
        if !has_format {
            write_format(&hooks, root)?;
        }
        let known = durable::KnownDirs::default();
        for d in ["shares", "incoming", "corrupt", "slots"] {
            let p = root.join(d);
            durable::ensure_dirs(&hooks, &known, root, &p).map_err(io_err(&p))?;
        }
        let incoming = root.join("incoming");
        for e in fs::read_dir(&incoming)
            .map_err(io_err(&incoming))?
            .flatten()
        {
            tracing::info!(path = %e.path().display(), "removing partial share left by a crash");
            let _ = fs::remove_file(e.path());
        }
        let used = walk_bytes(&root.join("shares")).saturating_add(walk_bytes(&root.join("slots")));
        Ok(ShareStore {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                cfg,
                space: space::Space::new(used),
                hooks,
                known,
                _lock: lock,
                recent_good: Default::default(),
                slot_lock: Default::default(),
                #[cfg(any(test, feature = "test-util"))]
                free_override: OnceLock::new(),
            }),
        })
    }

    /// For tests: pretend the filesystem has `free` bytes available.
    #[cfg(any(test, feature = "test-util"))]
    pub fn with_free_space_override(self, free: Arc<AtomicU64>) -> Self {
        let _ = self.inner.free_override.set(free);
        self
    }

    /// For tests: run `hook` at every [`Point`] the store reaches (set
    /// once; later calls are ignored and return `false`).
    #[cfg(any(test, feature = "test-util"))]
    pub fn set_hook(&self, hook: Hook) -> bool {
        self.inner.hooks.set(hook)
    }

    /// For tests: the directories fsynced since the last call.
    #[cfg(any(test, feature = "test-util"))]
    pub fn take_synced_dirs(&self) -> Vec<PathBuf> {
        self.inner.hooks.take_synced()
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Free bytes on the store's filesystem (one `statvfs`, no walk).
    pub(crate) fn disk_free(&self) -> Result<u64, StoreError> {
        #[cfg(any(test, feature = "test-util"))]
        if let Some(f) = self.inner.free_override.get() {
            return Ok(f.load(Ordering::Relaxed));
        }
        fs4::available_space(&self.inner.root).map_err(io_err(&self.inner.root))
    }

    /// Capacity, used, reserved and free bytes (no walk of the store).
    ///
    /// # Errors
    /// [`StoreError::Io`] if the filesystem cannot be queried.
    pub fn space(&self) -> Result<SpaceFigures, StoreError> {
        let free = self.disk_free()?;
        Ok(self
            .inner
            .space
            .figures(self.inner.cfg.capacity, free, self.inner.cfg.reserve))
    }

    /// Bytes available to new shares: see [`SpaceFigures::available`].
    ///
    /// # Errors
    /// [`StoreError::Io`] if the filesystem cannot be queried.
    pub fn available(&self) -> Result<u64, StoreError> {
        Ok(self.space()?.available)
    }

    /// Bytes of finished shares (and slots) held, checksums included: a
    /// running counter, read without touching the disk.
    pub fn stored_bytes(&self) -> u64 {
        self.inner.space.figures(None, 0, 0).used
    }

    pub(crate) fn si_dir(&self, top: &str, si: &StorageIndex) -> PathBuf {
        let s = si.to_string();
        self.inner.root.join(top).join(&s[..2]).join(&s)
    }

    pub(crate) fn share_path(&self, si: &StorageIndex, shnum: u16) -> PathBuf {
        self.si_dir("shares", si).join(shnum.to_string())
    }

    /// Share numbers of `si` held here.
    ///
    /// # Errors
    /// [`StoreError::Io`] on a read failure.
    pub fn list(&self, si: &StorageIndex) -> Result<Vec<u16>, StoreError> {
        let dir = self.si_dir("shares", si);
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&dir)(e)),
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
                    io_err(&p)(e)
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
        if offset == 0 && len == size {
            let p = self.share_path(si, shnum);
            let mut f = File::open(&p).map_err(io_err(&p))?;
            let mut all = Vec::with_capacity(size as usize + TRAILER as usize);
            f.read_to_end(&mut all).map_err(io_err(&p))?;
            if all.len() as u64 != size + TRAILER {
                return Err(StoreError::OutOfRange);
            }
            let (data, trailer) = all.split_at(size as usize);
            if xxhash_rust::xxh3::xxh3_128(data).to_le_bytes() != trailer {
                self.quarantine(si, shnum);
                return Err(StoreError::Corrupt);
            }
            all.truncate(size as usize);
            return Ok(all);
        }
        self.read_range(si, shnum, offset, len)
    }

    /// Read `len` bytes at `offset` of a stored share, checking nothing
    /// (the caller checked the range).
    pub(crate) fn read_range(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let p = self.share_path(si, shnum);
        let mut f = File::open(&p).map_err(io_err(&p))?;
        f.seek(SeekFrom::Start(offset)).map_err(io_err(&p))?;
        // Read into spare capacity: no zeroing of a buffer about to be filled.
        let mut buf = Vec::with_capacity(len as usize);
        (&mut f)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(io_err(&p))?;
        if buf.len() as u64 != len {
            return Err(StoreError::OutOfRange);
        }
        Ok(buf)
    }

    /// Stream share `shnum` of `si` through `each` in pieces of at most
    /// [`CHUNK`] bytes (one buffer, whatever the share's size), returning
    /// whether its checksum holds.
    pub(crate) fn stream(
        &self,
        si: &StorageIndex,
        shnum: u16,
        mut each: impl FnMut(&[u8]),
    ) -> Result<bool, StoreError> {
        let size = self.share_size(si, shnum)?;
        let p = self.share_path(si, shnum);
        let mut f = File::open(&p).map_err(io_err(&p))?;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![0u8; CHUNK];
        let mut left = size;
        while left > 0 {
            let n = (left.min(CHUNK as u64)) as usize;
            f.read_exact(&mut buf[..n]).map_err(io_err(&p))?;
            hasher.update(&buf[..n]);
            each(&buf[..n]);
            left -= n as u64;
        }
        let mut trailer = [0u8; TRAILER as usize];
        f.read_exact(&mut trailer).map_err(io_err(&p))?;
        Ok(hasher.digest128().to_le_bytes() == trailer)
    }

    /// Check a stored share against its checksum, reading it in pieces
    /// (memory stays bounded whatever its size), quarantining it if corrupt.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`], [`StoreError::NotFound`] or [`StoreError::Io`].
    pub fn verify(&self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError> {
        if self.stream(si, shnum, |_| {})? {
            Ok(())
        } else {
            self.quarantine(si, shnum);
            Err(StoreError::Corrupt)
        }
    }

    /// Move a share to `corrupt/` (it is never served again).
    pub(crate) fn quarantine(&self, si: &StorageIndex, shnum: u16) {
        let from = self.share_path(si, shnum);
        let to = self
            .inner
            .root
            .join("corrupt")
            .join(format!("{si}.{shnum}.{:016x}", rand_suffix()));
        tracing::warn!(%si, shnum, "share failed its check; moved to {}", to.display());
        let len = fs::metadata(&from).map(|m| m.len()).unwrap_or(0);
        if fs::rename(&from, &to).is_ok() {
            self.inner.space.adjust_used(0, len);
            self.inner.hooks.hit(Point::Quarantined);
            if let Some(dir) = from.parent() {
                let _ = durable::fsync_dir(&self.inner.hooks, dir);
            }
            let _ = durable::fsync_dir(&self.inner.hooks, &self.inner.root.join("corrupt"));
        }
    }
}

/// Whether `root` has a `format` file of a version this release reads
/// (`Ok(false)`: none yet). Reads only.
fn read_format(root: &Path) -> Result<bool, StoreError> {
    let path = root.join(FORMAT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let version = text
                .trim_end()
                .strip_prefix(FORMAT_PREFIX)
                .and_then(|v| v.parse::<u32>().ok());
            match version {
                Some(v) if v <= STORE_FORMAT => Ok(true),
                _ => Err(StoreError::UnsupportedFormat {
                    path: root.display().to_string(),
                    found: text.trim_end().chars().take(64).collect(),
                    supported: STORE_FORMAT,
                }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Give a store without a `format` file (new, or older than the file) the
/// current one, whole or not at all: temporary file, fsync, rename, fsync
/// the directory.
fn write_format(hooks: &hooks::Hooks, root: &Path) -> Result<(), StoreError> {
    let path = root.join(FORMAT_FILE);
    let tmp = root.join(format!("{FORMAT_FILE}.{:016x}", rand_suffix()));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(format!("{FORMAT_PREFIX}{STORE_FORMAT}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    durable::fsync_dir(hooks, root).map_err(io_err(root))
}
