//! Mutable slots: the rule for next turn's mutable files, fixed now.
//!
//! A slot is `(storage index, share number)` like a share, but its contents
//! change: each version carries a sequence number, and a slot is replaced
//! only by a version with a higher one, atomically. A new version is
//! written beside the old one (temporary file, checksum, fsync); then,
//! under the store's slot lock, the version held is read and compared, and
//! the new file is renamed over the old one and the directory fsynced.
//! Comparing after writing, under the lock, is what makes concurrent
//! writers safe: of two versions written at once the higher wins whatever
//! the order they finish in, and a crash at any point leaves the old
//! version or the new one, whole (`tests/tests/store_crash.rs`).
//!
//! On disk: `"GVSLOT1"`, the sequence number (u64 little-endian), the
//! contents, then the XXH3-128 checksum of everything before it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};

use crate::error::StoreError;
use crate::store::base::{check_shnum, io_err, rand_suffix, ShareStore, TRAILER};
use crate::store::durable;
use crate::store::hooks::Point;
use crate::types::StorageIndex;

const MAGIC: &[u8; 7] = b"GVSLOT1";
const HEADER: u64 = 7 + 8;
/// Largest slot contents (a version is held in memory while written).
pub const MAX_SLOT: usize = 16 << 20;

/// Parse a slot file: (sequence number, contents), or `None` if its
/// checksum or header is wrong.
fn parse(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let body_len = bytes.len().checked_sub(TRAILER as usize)?;
    let (body, sum) = bytes.split_at(body_len);
    if body.len() < HEADER as usize
        || &body[..7] != MAGIC
        || xxhash_rust::xxh3::xxh3_128(body).to_le_bytes() != sum
    {
        return None;
    }
    let seq = u64::from_le_bytes(body[7..15].try_into().ok()?);
    Some((seq, &body[15..]))
}

impl ShareStore {
    /// The version held in slot `shnum` of `si`: its sequence number and
    /// contents. A slot whose checksum fails is quarantined.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Corrupt`], I/O errors.
    pub fn slot_read(&self, si: &StorageIndex, shnum: u16) -> Result<(u64, Vec<u8>), StoreError> {
        check_shnum(shnum)?;
        let path = self.si_dir("slots", si).join(shnum.to_string());
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => f.read_to_end(&mut bytes).map_err(io_err(&path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(io_err(&path)(e)),
        };
        match parse(&bytes) {
            Some((seq, data)) => Ok((seq, data.to_vec())),
            None => {
                let to = self
                    .inner
                    .root
                    .join("corrupt")
                    .join(format!("slot.{si}.{shnum}.{:016x}", rand_suffix()));
                tracing::warn!(%si, shnum, "slot failed its checksum; moved to {}", to.display());
                if fs::rename(&path, &to).is_ok() {
                    self.inner.space.adjust_used(0, bytes.len() as u64);
                }
                Err(StoreError::Corrupt)
            }
        }
    }

    /// Replace slot `shnum` of `si` with version `seq` holding `data`, if
    /// the slot is empty or holds a lower sequence number.
    ///
    /// # Errors
    /// [`StoreError::StaleSequence`] if the slot holds `seq` or higher;
    /// [`StoreError::TooLarge`], [`StoreError::NoSpace`], I/O errors. On
    /// error the version held is untouched.
    pub fn slot_write(
        &self,
        si: &StorageIndex,
        shnum: u16,
        seq: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        check_shnum(shnum)?;
        if data.len() > MAX_SLOT {
            return Err(StoreError::TooLarge(data.len() as u64));
        }
        let inner = &self.inner;
        let len = HEADER + data.len() as u64 + TRAILER;
        let free = self.disk_free()?;
        inner
            .space
            .try_reserve(len, inner.cfg.capacity, free, inner.cfg.reserve)?;
        let tmp = inner
            .root
            .join("incoming")
            .join(format!("slot.{si}.{shnum}.{:016x}", rand_suffix()));
        let r = self.slot_replace(si, shnum, seq, data, &tmp, len);
        inner.space.release(len);
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    }

    fn slot_replace(
        &self,
        si: &StorageIndex,
        shnum: u16,
        seq: u64,
        data: &[u8],
        tmp: &std::path::Path,
        len: u64,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut body = Vec::with_capacity(len as usize);
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&seq.to_le_bytes());
        body.extend_from_slice(data);
        let sum = xxhash_rust::xxh3::xxh3_128(&body).to_le_bytes();
        body.extend_from_slice(&sum);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(io_err(tmp))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(io_err(tmp))?;
        drop(f);
        inner.hooks.hit(Point::SlotSynced);
        let dir = self.si_dir("slots", si);
        let dest = dir.join(shnum.to_string());
        let _serial = inner.slot_lock.lock().unwrap_or_else(|p| p.into_inner());
        let old_len = match self.slot_read(si, shnum) {
            Ok((held, _)) if held >= seq => {
                return Err(StoreError::StaleSequence { held, offered: seq })
            }
            Ok((_, old)) => HEADER + old.len() as u64 + TRAILER,
            // Empty, or corrupt (quarantined by the read): replaced.
            Err(StoreError::NotFound | StoreError::Corrupt) => 0,
            Err(e) => return Err(e),
        };
        durable::ensure_dirs(&inner.hooks, &inner.known, &inner.root, &dir)
            .map_err(io_err(&dir))?;
        fs::rename(tmp, &dest).map_err(io_err(&dest))?;
        inner.space.adjust_used(len, old_len);
        inner.hooks.hit(Point::SlotRenamed);
        durable::fsync_dir(&inner.hooks, &dir).map_err(io_err(&dir))
    }
}
