//! Deleting shares, only ever on the server's own decision.
//!
//! Repair adds shares; rebalancing will move them and garbage collection
//! will drop unwanted ones. The rule for all three, fixed now: a server
//! deletes a share only because *it* decided to, never because a peer
//! asked. No request of the storage protocol deletes (or replaces) a
//! finished share (`server::handler::tests::no_request_removes_a_good_share`
//! sends every kind, hostile ones included). [`ShareStore::delete`] takes a
//! [`Deletion`] saying why:
//!
//! * [`Deletion::Collected`]: the server's own garbage collection (leases
//!   come with the capabilities that need them; nothing in the protocol
//!   makes this).
//! * [`Deletion::Moved`]: the share now lives on another server, and this
//!   server checked that copy itself. The proof, a [`VerifiedCopy`], can
//!   only be made by [`CopyCheck::finish`], after the server fed the copy's
//!   bytes, as it read them from the other server, through the same check
//!   a stored share gets ([`crate::chk::ShareCheck`]) and found its
//!   extension block identical to its own share's. Another server's word
//!   that it holds a copy is not evidence.
//!
//! A delete unlinks the file (atomic) and fsyncs its directory; a crash
//! leaves the share either there or gone, never partial.

use std::fs;

use grapevine_crypto::identity::NodeId;

use crate::chk::{Footer, ShareCheck, FOOTER_LEN};
use crate::error::StoreError;
use crate::store::base::{io_err, ShareStore};
use crate::store::durable;
use crate::store::hooks::Point;
use crate::types::StorageIndex;

/// Why the server deletes one of its shares.
#[derive(Debug)]
pub enum Deletion {
    /// Its own garbage collection decided the share is unwanted.
    Collected,
    /// The share was moved, and the server verified the copy itself.
    Moved(VerifiedCopy),
}

/// Evidence that a server itself checked a copy of one of its shares held
/// by another server. Made only by [`CopyCheck::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCopy {
    si: StorageIndex,
    shnum: u16,
    holder: NodeId,
}

impl VerifiedCopy {
    /// The server holding the copy.
    pub fn holder(&self) -> NodeId {
        self.holder
    }
}

/// A copy of a local share being checked: feed it the copy's bytes from
/// the start ([`CopyCheck::feed`]), then [`CopyCheck::finish`].
#[derive(Debug)]
pub struct CopyCheck {
    si: StorageIndex,
    shnum: u16,
    holder: NodeId,
    check: ShareCheck,
}

/// The extension block in a share's tail (its last bytes).
fn ueb_of(tail: &[u8], size: u64) -> Option<&[u8]> {
    let flen = FOOTER_LEN as usize;
    let f = Footer::parse(tail.get(tail.len().checked_sub(flen)?..)?, size).ok()?;
    let start = (tail.len() - flen).checked_sub(f.ueb_len as usize)?;
    tail.get(start..tail.len() - flen)
}

impl CopyCheck {
    /// The copy's next bytes, in order from its start.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.check.feed(bytes);
    }

    /// The proof, if every byte of the copy checked out.
    ///
    /// # Errors
    /// [`StoreError::BadEvidence`].
    pub fn finish(self) -> Result<VerifiedCopy, StoreError> {
        self.check
            .finish()
            .map_err(|e| StoreError::BadEvidence(format!("the copy does not check: {e}")))?;
        Ok(VerifiedCopy {
            si: self.si,
            shnum: self.shnum,
            holder: self.holder,
        })
    }
}

impl ShareStore {
    /// Start checking a copy of share `shnum` of `si` that the server read
    /// from `holder`: the copy's `size` and its last
    /// `min(size, ShareCheck::TAIL_LEN)` bytes. The copy must be the same
    /// size as the share here and carry the same extension block.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the share is not here;
    /// [`StoreError::BadEvidence`] if the copy differs in size or extension
    /// block, or its tail is broken.
    pub fn check_copy(
        &self,
        si: &StorageIndex,
        shnum: u16,
        holder: NodeId,
        size: u64,
        tail: &[u8],
    ) -> Result<CopyCheck, StoreError> {
        let bad = |m: &str| StoreError::BadEvidence(m.to_string());
        let local_size = self.share_size(si, shnum)?;
        if size != local_size {
            return Err(bad("the copy's size differs"));
        }
        let n = size.min(ShareCheck::TAIL_LEN);
        let local_tail = self.read_range(si, shnum, size - n, n)?;
        match (ueb_of(&local_tail, size), ueb_of(tail, size)) {
            (Some(a), Some(b)) if a == b => {}
            _ => return Err(bad("the copy's extension block differs")),
        }
        let check = ShareCheck::new(shnum, size, tail)
            .map_err(|e| StoreError::BadEvidence(format!("the copy's tail: {e}")))?;
        Ok(CopyCheck {
            si: *si,
            shnum,
            holder,
            check,
        })
    }

    /// Delete share `shnum` of `si`, for the reason `why`.
    ///
    /// # Errors
    /// [`StoreError::BadEvidence`] if a [`VerifiedCopy`] is for another
    /// share; [`StoreError::NotFound`]; I/O errors. Nothing is deleted on
    /// error.
    pub fn delete(&self, si: &StorageIndex, shnum: u16, why: Deletion) -> Result<(), StoreError> {
        if let Deletion::Moved(proof) = &why {
            if proof.si != *si || proof.shnum != shnum {
                return Err(StoreError::BadEvidence(
                    "the verified copy is of another share".into(),
                ));
            }
        }
        let path = self.share_path(si, shnum);
        let len = fs::metadata(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    StoreError::NotFound
                } else {
                    io_err(&path)(e)
                }
            })?
            .len();
        fs::remove_file(&path).map_err(io_err(&path))?;
        self.inner.space.adjust_used(0, len);
        self.inner.hooks.hit(Point::Unlinked);
        tracing::info!(%si, shnum, ?why, "share deleted");
        let dir = self.si_dir("shares", si);
        durable::fsync_dir(&self.inner.hooks, &dir).map_err(io_err(&dir))?;
        // An empty storage index directory goes too (it fails harmlessly if
        // another share arrived meanwhile).
        if fs::remove_dir(&dir).is_ok() {
            if let Some(parent) = dir.parent() {
                durable::fsync_dir(&self.inner.hooks, parent).map_err(io_err(parent))?;
            }
        }
        Ok(())
    }
}
