//! Named points in the store's writing, closing and deleting of shares,
//! where a test can stop the process (or pause, or act) to see what a
//! crash there leaves behind.
//!
//! The store calls [`Hooks::hit`] at each [`Point`]. Without the
//! `test-util` feature (and outside the crate's own tests) a hit is an
//! empty inline function: release builds pay nothing. With it, a test
//! installs a function ([`crate::ShareStore::set_hook`]) that runs at every
//! point, and the crash test (`tests/tests/store_crash.rs`) kills its
//! child process at each point in turn.

/// A point in the store's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Point {
    /// Allocate: the filesystem's free space was read; nothing reserved.
    SpaceRead,
    /// Allocate: the share's temporary file exists under `incoming/`.
    Allocated,
    /// A write was appended to a temporary file.
    Written,
    /// Close: checksum appended and the file fsynced; not yet in place.
    Synced,
    /// Close: a directory on the share's path was made; its parent is not
    /// yet fsynced.
    DirCreated,
    /// Close: the share is in place under `shares/`; its directory is not
    /// yet fsynced.
    Renamed,
    /// Close: everything fsynced; the share is about to be acknowledged.
    Closed,
    /// Delete: the share was unlinked; its directory is not yet fsynced.
    Unlinked,
    /// Quarantine: the share was moved to `corrupt/`; not yet fsynced.
    Quarantined,
    /// Slot: the new version is written and fsynced beside the old one.
    SlotSynced,
    /// Slot: the new version replaced the old one; directory not fsynced.
    SlotRenamed,
}

impl Point {
    /// Every point, in the order a share meets them.
    pub const ALL: [Point; 11] = [
        Point::SpaceRead,
        Point::Allocated,
        Point::Written,
        Point::Synced,
        Point::DirCreated,
        Point::Renamed,
        Point::Closed,
        Point::Unlinked,
        Point::Quarantined,
        Point::SlotSynced,
        Point::SlotRenamed,
    ];

    /// The point's name (as tests and logs print it).
    pub fn name(self) -> &'static str {
        match self {
            Point::SpaceRead => "space-read",
            Point::Allocated => "allocated",
            Point::Written => "written",
            Point::Synced => "synced",
            Point::DirCreated => "dir-created",
            Point::Renamed => "renamed",
            Point::Closed => "closed",
            Point::Unlinked => "unlinked",
            Point::Quarantined => "quarantined",
            Point::SlotSynced => "slot-synced",
            Point::SlotRenamed => "slot-renamed",
        }
    }

    /// The point called `name`.
    pub fn from_name(name: &str) -> Option<Point> {
        Point::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What runs at a point (tests only).
#[cfg(any(test, feature = "test-util"))]
pub type Hook = std::sync::Arc<dyn Fn(Point) + Send + Sync>;

/// The hook of a store, if a test set one; a list of the directories the
/// store fsynced, for tests of durability.
#[derive(Default)]
pub(crate) struct Hooks {
    #[cfg(any(test, feature = "test-util"))]
    hook: std::sync::OnceLock<Hook>,
    #[cfg(any(test, feature = "test-util"))]
    synced: std::sync::Mutex<Vec<std::path::PathBuf>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

impl Hooks {
    /// The store reached `p`.
    #[inline]
    pub(crate) fn hit(&self, p: Point) {
        #[cfg(any(test, feature = "test-util"))]
        if let Some(h) = self.hook.get() {
            h(p);
        }
        let _ = p;
    }

    /// A directory was fsynced.
    #[inline]
    pub(crate) fn dir_synced(&self, dir: &std::path::Path) {
        #[cfg(any(test, feature = "test-util"))]
        self.synced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(dir.to_path_buf());
        let _ = dir;
    }

    /// Set the hook (once).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn set(&self, hook: Hook) -> bool {
        self.hook.set(hook).is_ok()
    }

    /// Take the list of directories fsynced since the last call.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn take_synced(&self) -> Vec<std::path::PathBuf> {
        std::mem::take(&mut *self.synced.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
