//! The scrub's tokio driver: [`run_scrub`] steps the store's
//! [`Scrubber`](crate::store::Scrubber) on the blocking pool, a chunk at a
//! time, sleeping as its [`RateLimit`](crate::store::RateLimit) says, and
//! starts a new pass [`ScrubConfig::interval`] after the last one ended.

use std::sync::Arc;
use std::time::Duration;

use crate::store::{RateLimit, ScrubStats, Scrubber, ShareStore};

/// How fast, and how often, the store is scrubbed.
#[derive(Debug, Clone, Copy)]
pub struct ScrubConfig {
    /// Bytes read per second, on average (0: no scrub).
    pub bytes_per_s: u64,
    /// Pause between the end of one pass and the start of the next.
    pub interval: Duration,
}

impl Default for ScrubConfig {
    /// 8 MiB/s, a new pass a week after the last one ended.
    fn default() -> Self {
        ScrubConfig {
            bytes_per_s: 8 << 20,
            interval: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Scrub `store` for ever, counting into `stats` (returns at once if the
/// rate is 0).
pub async fn run_scrub(store: ShareStore, stats: Arc<ScrubStats>, cfg: ScrubConfig) {
    if cfg.bytes_per_s == 0 {
        return;
    }
    // Each step reads at most a tenth of a second's worth, so the pace is
    // smooth at any rate.
    let chunk = (cfg.bytes_per_s / 10).clamp(4096, 1 << 20);
    let mut pace = RateLimit::new(cfg.bytes_per_s);
    let mut scrubber = Some(Scrubber::new(store, stats));
    loop {
        let mut s = scrubber.take().expect("scrubber home between steps");
        let Ok((s, r)) = tokio::task::spawn_blocking(move || {
            let r = s.step(chunk);
            (s, r)
        })
        .await
        else {
            return;
        };
        scrubber = Some(s);
        match r {
            Ok(step) => {
                let next = pace.after(step.bytes, tokio::time::Instant::now().into_std());
                tokio::time::sleep_until(next.into()).await;
                if step.pass_done {
                    tokio::time::sleep(cfg.interval).await;
                }
            }
            Err(e) => {
                tracing::warn!("scrub: {e}");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}
