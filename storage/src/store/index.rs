//! The storage indexes a store holds shares of: what a server's repair job
//! walks (it checks the files whose shares it holds).

use std::fs;

use crate::store::ShareStore;
use crate::types::StorageIndex;

impl ShareStore {
    /// Every storage index with at least one share directory here, sorted.
    /// Names that are not storage indexes are skipped. (16 bytes per file
    /// held: a million files is 16 MB.)
    pub fn storage_indexes(&self) -> Vec<StorageIndex> {
        let shares = self.inner.root.join("shares");
        let mut out = Vec::new();
        let Ok(prefixes) = fs::read_dir(&shares) else {
            return out;
        };
        for p in prefixes.flatten() {
            let Ok(sis) = fs::read_dir(p.path()) else {
                continue;
            };
            for e in sis.flatten() {
                if let Some(si) = e.file_name().to_str().and_then(StorageIndex::parse) {
                    out.push(si);
                }
            }
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::store::ShareStore;
    use crate::types::StorageIndex;

    #[test]
    fn the_store_lists_the_files_it_holds_shares_of() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), 0).unwrap();
        assert!(store.storage_indexes().is_empty());
        let (a, b) = (StorageIndex([1; 16]), StorageIndex([200; 16]));
        for (si, shnum) in [(b, 0), (a, 3), (a, 4)] {
            let mut w = store.allocate(&si, shnum, 4).unwrap();
            w.write_at(0, b"data").unwrap();
            w.close().unwrap();
        }
        assert_eq!(store.storage_indexes(), vec![a, b]);
    }
}
