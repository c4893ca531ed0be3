//! A share being written: [`ShareWriter`], from allocation to close.
//!
//! Bytes go, in order, to a temporary file under `incoming/`, hashed as
//! they go. [`ShareWriter::close`] appends the checksum, fsyncs the file,
//! makes the share's directories durably ([`durable::ensure_dirs`]), moves
//! the file into place without ever replacing a share already there
//! ([`durable::rename_noreplace`]: two sessions closing the same share
//! race, and the second gets [`StoreError::AlreadyExists`] instead of
//! silently replacing the first), and fsyncs the directory. Only then is
//! the share acknowledged. A writer dropped before that removes its
//! temporary file and gives back its reservation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::StoreError;
use crate::store::base::{check_shnum, io_err, rand_suffix, Inner, ShareStore, TRAILER};
use crate::store::durable;
use crate::store::hooks::Point;
use crate::types::{StorageIndex, MAX_SHARE_SIZE};

/// A share being written.
pub struct ShareWriter {
    pub(crate) file: File,
    pub(crate) tmp: PathBuf,
    pub(crate) dest: PathBuf,
    pub(crate) size: u64,
    pub(crate) written: u64,
    pub(crate) hasher: xxhash_rust::xxh3::Xxh3,
    pub(crate) inner: Arc<Inner>,
    pub(crate) done: bool,
    /// Bytes from the start already written back and dropped from the
    /// page cache ([`StoreConfig::writeback`](crate::store::StoreConfig)).
    pub(crate) clean: u64,
    /// Bytes from the start whose write-out was started
    /// ([`START_WRITEOUT_EVERY`]).
    pub(crate) started: u64,
}

/// Without a writeback interval, how many bytes of a share being written
/// accumulate before their write-out to the disk is started: the disk
/// writes while the rest of the share arrives, and the fsync at close
/// finds little left to do (without it, a put's whole output waited in the
/// page cache for the closes' fsyncs, then went to the disk at once).
///
/// Started, not waited for: `posix_fadvise(POSIX_FADV_DONTNEED)` on the
/// range just written, which on Linux starts write-out of its dirty pages
/// without waiting (`WB_SYNC_NONE`) and drops only pages already clean
/// (none yet, just written). Advice only: a kernel that ignores it loses
/// nothing, since close fsyncs the whole file.
pub const START_WRITEOUT_EVERY: u64 = 8 << 20;

impl std::fmt::Debug for ShareWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareWriter")
            .field("tmp", &self.tmp)
            .field("size", &self.size)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl ShareStore {
    /// Start writing share `shnum` of `si`, announcing its `size`. The
    /// space check and the reservation are one step.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the share is stored,
    /// [`StoreError::NoSpace`] if `size` does not fit the disk above the
    /// reserve or the capacity, [`StoreError::BadShareNumber`] /
    /// [`StoreError::TooLarge`] for bad arguments. Nothing is written or
    /// reserved on error.
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
        let free = self.disk_free()?;
        self.inner.hooks.hit(Point::SpaceRead);
        self.inner.space.try_reserve(
            need,
            self.inner.cfg.capacity,
            free,
            self.inner.cfg.reserve,
        )?;
        let tmp = self
            .inner
            .root
            .join("incoming")
            .join(format!("{si}.{shnum}.{:016x}", rand_suffix()));
        let file = match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => f,
            Err(e) => {
                self.inner.space.release(need);
                return Err(io_err(&tmp)(e));
            }
        };
        self.inner.hooks.hit(Point::Allocated);
        Ok(ShareWriter {
            file,
            tmp,
            dest,
            size,
            written: 0,
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            inner: self.inner.clone(),
            done: false,
            clean: 0,
            started: 0,
        })
    }
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
        self.file.write_all(data).map_err(io_err(&self.tmp))?;
        self.hasher.update(data);
        self.written = end;
        self.inner.hooks.hit(Point::Written);
        if let Some(every) = self.inner.cfg.writeback {
            if end - self.clean >= every.max(1) {
                self.write_back()?;
            }
        } else if end - self.started >= START_WRITEOUT_EVERY {
            self.start_writeout();
        }
        Ok(())
    }

    /// Start writing out what was written since the last start
    /// ([`START_WRITEOUT_EVERY`]).
    fn start_writeout(&mut self) {
        let len = std::num::NonZeroU64::new(self.written - self.started);
        let _ = rustix::fs::fadvise(&self.file, self.started, len, rustix::fs::Advice::DontNeed);
        self.started = self.written;
    }

    /// Write what was written so far to disk and drop it from the page
    /// cache, so dirty pages never pile up past the writeback interval.
    fn write_back(&mut self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(io_err(&self.tmp))?;
        let len = std::num::NonZeroU64::new(self.written - self.clean);
        // Advice only: a kernel that ignores it costs memory, not data.
        let _ = rustix::fs::fadvise(&self.file, self.clean, len, rustix::fs::Advice::DontNeed);
        self.clean = self.written;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Finish: append the checksum, fsync, move into place (never over a
    /// share already there), fsync the directories. Only after this returns
    /// is the share acknowledged.
    ///
    /// # Errors
    /// [`StoreError::Incomplete`] if fewer bytes than announced were written;
    /// [`StoreError::AlreadyExists`] if another writer finished the same
    /// share first; I/O errors. On error nothing becomes visible and the
    /// share already stored (if any) is untouched.
    pub fn close(mut self) -> Result<(), StoreError> {
        if self.written != self.size {
            return Err(StoreError::Incomplete {
                written: self.written,
                size: self.size,
            });
        }
        let inner = self.inner.clone();
        let sum = self.hasher.digest128().to_le_bytes();
        self.file.write_all(&sum).map_err(io_err(&self.tmp))?;
        self.file.sync_all().map_err(io_err(&self.tmp))?;
        inner.hooks.hit(Point::Synced);
        let dir = self
            .dest
            .parent()
            .ok_or_else(|| {
                StoreError::Io(
                    self.dest.display().to_string(),
                    std::io::ErrorKind::InvalidInput.into(),
                )
            })?
            .to_path_buf();
        durable::ensure_dirs(&inner.hooks, &inner.known, &inner.root, &dir)
            .map_err(io_err(&dir))?;
        if !durable::rename_noreplace(&self.tmp, &self.dest).map_err(io_err(&self.dest))? {
            return Err(StoreError::AlreadyExists);
        }
        inner.hooks.hit(Point::Renamed);
        // In place: from here on the share is counted as stored, whatever
        // the directory's fsync says.
        self.done = true;
        let stored = self.size + TRAILER;
        inner.space.commit(stored, stored);
        durable::fsync_dir(&inner.hooks, &dir).map_err(io_err(&dir))?;
        inner.hooks.hit(Point::Closed);
        Ok(())
    }
}

impl Drop for ShareWriter {
    fn drop(&mut self) {
        if !self.done {
            self.inner.space.release(self.size + TRAILER);
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
