//! The filesystem steps that make a share durable, one function each:
//! fsync a directory, create a directory path so that every new entry on it
//! is durable, move a file into place without ever replacing one.
//!
//! A rename or a new directory is durable only once the directory holding
//! its entry is fsynced (`fsync(2)`: "calling fsync() on a file does not
//! necessarily ensure that the entry in the directory containing the file
//! has also reached disk"). So a share's path is created top down, each new
//! directory's parent fsynced before anything goes into it, and the share's
//! own directory is fsynced after the rename (garage's block manager does
//! the same for its block files).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::store::hooks::{Hooks, Point};

/// Fsync the directory `dir`.
pub(crate) fn fsync_dir(hooks: &Hooks, dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()?;
    hooks.dir_synced(dir);
    Ok(())
}

/// Directories known to be durable: made (or found) and their parent
/// fsynced by this process. Only the few top levels are remembered
/// (`shares/` and its 1024 prefix directories), so the set stays small.
#[derive(Debug, Default)]
pub(crate) struct KnownDirs(Mutex<HashSet<PathBuf>>);

impl KnownDirs {
    fn contains(&self, p: &Path) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).contains(p)
    }

    fn insert(&self, p: &Path) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.to_path_buf());
    }
}

/// Make `dir` (below `root`, which exists and is durable) and every missing
/// directory between them, fsyncing each one's parent, so the whole path
/// survives a crash. A directory found already there is fsynced in its
/// parent too, unless known durable: another writer may have just made it
/// and not yet fsynced its parent.
pub(crate) fn ensure_dirs(
    hooks: &Hooks,
    known: &KnownDirs,
    root: &Path,
    dir: &Path,
) -> io::Result<()> {
    let rel = dir
        .strip_prefix(root)
        .map_err(|_| io::Error::other("directory outside the store"))?;
    let mut parent = root.to_path_buf();
    for (depth, c) in rel.components().enumerate() {
        let here = parent.join(c);
        if !known.contains(&here) {
            match fs::create_dir(&here) {
                Ok(()) => hooks.hit(Point::DirCreated),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            fsync_dir(hooks, &parent)?;
            if depth < 2 {
                known.insert(&here);
            }
        }
        parent = here;
    }
    Ok(())
}

/// Move `from` to `to` unless something is at `to` already: `Ok(false)`
/// then, and nothing moved. Atomic: `renameat2(RENAME_NOREPLACE)`, or on a
/// filesystem without it, a hard link (which fails if `to` exists) and the
/// removal of `from`.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<bool> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => match fs::hard_link(from, to) {
            Ok(()) => {
                fs::remove_file(from)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        },
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        fs::write(&a, b"first").unwrap();
        fs::write(&b, b"second").unwrap();
        assert!(!rename_noreplace(&b, &a).unwrap());
        assert_eq!(fs::read(&a).unwrap(), b"first");
        assert!(b.exists(), "nothing moved");
        assert!(rename_noreplace(&b, &c).unwrap());
        assert_eq!(fs::read(&c).unwrap(), b"second");
        assert!(!b.exists());
    }
}
