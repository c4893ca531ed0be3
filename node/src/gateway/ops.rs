//! Operations in progress through the gateway (uploads, downloads, checks)
//! and the last ones finished, for `/status?t=json` and the page; and the
//! counters `/statistics` reports (files and bytes up and down).
//!
//! [`Operations::start`] registers an operation and returns an [`OpHandle`]
//! its handler reports progress to; dropping the handle finishes the
//! operation (so a handler that returns early, or a download whose client
//! went away, never leaves one "active"). Memory is bounded: an entry per
//! active operation (which the gateway's connection limit bounds) and at most
//! [`RECENT`] finished ones.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

/// Finished operations remembered.
pub const RECENT: usize = 20;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An upload (PUT /uri, POST /uri?t=upload).
    Upload,
    /// A download (GET /uri/CAP, /named/...).
    Download,
    /// A check (POST /uri/CAP?t=check).
    Check,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Upload => "upload",
            Kind::Download => "download",
            Kind::Check => "check",
        }
    }
}

#[derive(Debug)]
struct Op {
    id: u64,
    kind: Kind,
    si: Mutex<String>,
    size: u64,
    started: SystemTime,
    started_at: Instant,
    done: AtomicU64,
    ok: AtomicBool,
}

impl Op {
    fn json(&self, active: bool) -> Value {
        let si = self.si.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let progress = if self.size == 0 {
            if active {
                0.0
            } else {
                1.0
            }
        } else {
            (self.done.load(Relaxed) as f64 / self.size as f64).min(1.0)
        };
        let status = match (active, self.ok.load(Relaxed)) {
            (true, _) => "running",
            (false, true) => "finished",
            (false, false) => "failed",
        };
        let mut v = json!({
            "type": self.kind.name(),
            "id": self.id,
            "storage-index-string": si,
            "total-size": self.size,
            "status": status,
            "started": self.started.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
            "elapsed": self.started_at.elapsed().as_secs_f64(),
            "active": active,
        });
        match self.kind {
            Kind::Upload => {
                v["progress-hash"] = json!(1.0);
                v["progress-ciphertext"] = json!(progress);
                v["progress-encode-push"] = json!(progress);
            }
            Kind::Download | Kind::Check => v["progress"] = json!(progress),
        }
        v
    }
}

/// The gateway's operations and counters.
#[derive(Debug, Default)]
pub struct Operations {
    next: AtomicU64,
    active: Mutex<Vec<Arc<Op>>>,
    recent: Mutex<VecDeque<Value>>,
    /// Files uploaded.
    pub files_uploaded: AtomicU64,
    /// Bytes uploaded.
    pub bytes_uploaded: AtomicU64,
    /// Files downloaded (ranges included).
    pub files_downloaded: AtomicU64,
    /// Bytes downloaded.
    pub bytes_downloaded: AtomicU64,
}

/// One operation in progress; dropping it finishes it.
#[derive(Debug)]
pub struct OpHandle {
    ops: Arc<Operations>,
    op: Arc<Op>,
}

impl OpHandle {
    /// Bytes done so far.
    pub fn progress(&self, done: u64) {
        self.op.done.store(done, Relaxed);
    }

    /// Name the file's storage index once known (an upload learns it at
    /// the end).
    pub fn set_storage_index(&self, si: String) {
        *self.op.si.lock().unwrap_or_else(|p| p.into_inner()) = si;
    }

    /// Mark it successful (else it is reported as failed when dropped).
    pub fn succeeded(&self) {
        self.op.ok.store(true, Relaxed);
    }
}

impl Drop for OpHandle {
    fn drop(&mut self) {
        let mut active = self.ops.active.lock().unwrap_or_else(|p| p.into_inner());
        active.retain(|o| o.id != self.op.id);
        drop(active);
        let mut recent = self.ops.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_back();
        }
        recent.push_front(self.op.json(false));
    }
}

impl Operations {
    /// Register an operation of `kind` on `size` bytes of storage index `si`.
    pub fn start(self: &Arc<Self>, kind: Kind, si: String, size: u64) -> OpHandle {
        let op = Arc::new(Op {
            id: self.next.fetch_add(1, Relaxed),
            kind,
            si: Mutex::new(si),
            size,
            started: SystemTime::now(),
            started_at: Instant::now(),
            done: AtomicU64::new(0),
            ok: AtomicBool::new(false),
        });
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(op.clone());
        OpHandle {
            ops: self.clone(),
            op,
        }
    }

    /// Tahoe's `/status?t=json`: `{"active": [...], "recent": [...]}`, the
    /// newest first.
    pub fn status_json(&self) -> Value {
        let active: Vec<Value> = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .map(|o| o.json(true))
            .collect();
        let recent: Vec<Value> = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        json!({ "active": active, "recent": recent })
    }

    /// Operations in progress now.
    pub fn active_count(&self) -> usize {
        self.active.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_active_until_dropped_and_recent_is_bounded() {
        let ops = Arc::new(Operations::default());
        let up = ops.start(Kind::Upload, String::new(), 1000);
        up.progress(250);
        let down = ops.start(Kind::Download, "si".into(), 0);
        let s = ops.status_json();
        assert_eq!(s["active"].as_array().unwrap().len(), 2);
        assert_eq!(s["active"][1]["type"], "upload");
        assert_eq!(s["active"][1]["progress-encode-push"], 0.25);
        assert_eq!(s["active"][0]["storage-index-string"], "si");
        up.set_storage_index("abc".into());
        up.succeeded();
        drop(up);
        drop(down);
        let s = ops.status_json();
        assert!(s["active"].as_array().unwrap().is_empty());
        assert_eq!(s["recent"][0]["status"], "failed", "the download, newest");
        assert_eq!(s["recent"][1]["status"], "finished");
        assert_eq!(s["recent"][1]["storage-index-string"], "abc");
        for _ in 0..3 * RECENT {
            drop(ops.start(Kind::Check, String::new(), 1));
        }
        assert_eq!(
            ops.status_json()["recent"].as_array().unwrap().len(),
            RECENT
        );
        assert_eq!(ops.active_count(), 0);
    }
}
