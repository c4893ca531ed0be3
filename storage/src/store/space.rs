//! Space accounting: what a store holds, what open writers were promised,
//! and whether one more share fits, decided in one step.
//!
//! Two limits apply to a new share: the filesystem's free space less the
//! configured reserve, and the capacity the node offers the grid. Both are
//! checked, and the share's bytes reserved, under one lock
//! ([`Space::try_reserve`]), so concurrent allocations can never promise
//! the same bytes twice. Bytes stay reserved from allocation until the
//! writer is closed (then they count as used) or dropped (then they are
//! released). The used figure is a running counter, set by one walk of the
//! store when it is opened and kept current by every close and removal, so
//! status and metrics read it without touching the disk.

use std::sync::{Mutex, MutexGuard};

use crate::error::StoreError;

/// A store's space, as status and metrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpaceFigures {
    /// Bytes the node offers the grid (`None`: only the disk limits it).
    pub capacity: Option<u64>,
    /// Bytes of stored shares (and slots), checksums included.
    pub used: u64,
    /// Bytes promised to shares being written.
    pub reserved: u64,
    /// Free bytes on the store's filesystem.
    pub disk_free: u64,
    /// Free bytes never used for shares.
    pub reserve: u64,
    /// Bytes a new share may take now: the smaller of disk free less the
    /// reserve and what is reserved, and capacity less what is used and
    /// reserved.
    pub available: u64,
}

impl SpaceFigures {
    fn compute(capacity: Option<u64>, c: Counts, disk_free: u64, reserve: u64) -> Self {
        let by_disk = disk_free.saturating_sub(reserve).saturating_sub(c.reserved);
        let by_capacity = capacity.map_or(u64::MAX, |cap| {
            cap.saturating_sub(c.used).saturating_sub(c.reserved)
        });
        SpaceFigures {
            capacity,
            used: c.used,
            reserved: c.reserved,
            disk_free,
            reserve,
            available: by_disk.min(by_capacity),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    reserved: u64,
    used: u64,
}

/// The counters, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct Space {
    counts: Mutex<Counts>,
}

impl Space {
    /// Counters starting from `used` bytes already stored.
    pub(crate) fn new(used: u64) -> Self {
        Space {
            counts: Mutex::new(Counts { reserved: 0, used }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // Every update is a pair of saturating additions: a panic cannot
        // leave the counts half-changed.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The figures, given the filesystem's free bytes.
    pub(crate) fn figures(
        &self,
        capacity: Option<u64>,
        disk_free: u64,
        reserve: u64,
    ) -> SpaceFigures {
        SpaceFigures::compute(capacity, *self.lock(), disk_free, reserve)
    }

    /// Reserve `need` bytes if they fit, in one step with the check.
    ///
    /// # Errors
    /// [`StoreError::NoSpace`] (nothing reserved).
    pub(crate) fn try_reserve(
        &self,
        need: u64,
        capacity: Option<u64>,
        disk_free: u64,
        reserve: u64,
    ) -> Result<(), StoreError> {
        let mut c = self.lock();
        let available = SpaceFigures::compute(capacity, *c, disk_free, reserve).available;
        if need > available {
            return Err(StoreError::NoSpace { need, available });
        }
        c.reserved = c.reserved.saturating_add(need);
        Ok(())
    }

    /// Give back a reservation (a writer dropped unfinished).
    pub(crate) fn release(&self, reserved: u64) {
        let mut c = self.lock();
        c.reserved = c.reserved.saturating_sub(reserved);
    }

    /// A writer finished: its reservation becomes `stored` bytes used.
    pub(crate) fn commit(&self, reserved: u64, stored: u64) {
        let mut c = self.lock();
        c.reserved = c.reserved.saturating_sub(reserved);
        c.used = c.used.saturating_add(stored);
    }

    /// `bytes` more are stored (or, negative, fewer: a share removed).
    pub(crate) fn adjust_used(&self, add: u64, remove: u64) {
        let mut c = self.lock();
        c.used = c.used.saturating_add(add).saturating_sub(remove);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_limits_apply_and_reservations_count_against_both() {
        let s = Space::new(100);
        // Disk: 1000 free - 50 reserve; capacity 400 - 100 used.
        let f = s.figures(Some(400), 1000, 50);
        assert_eq!((f.used, f.reserved, f.available), (100, 0, 300));
        s.try_reserve(250, Some(400), 1000, 50).unwrap();
        assert!(matches!(
            s.try_reserve(51, Some(400), 1000, 50),
            Err(StoreError::NoSpace {
                need: 51,
                available: 50
            })
        ));
        // Without a capacity, the disk decides: 950 - 250.
        assert_eq!(s.figures(None, 1000, 50).available, 700);
        s.commit(250, 250);
        let f = s.figures(Some(400), 1000, 50);
        assert_eq!((f.used, f.reserved, f.available), (350, 0, 50));
        s.adjust_used(0, 350);
        s.release(1_000_000);
        assert_eq!(s.figures(Some(400), 0, 50).available, 0, "saturates");
    }
}
