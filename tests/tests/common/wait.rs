//! Waiting on a condition with a deadline, for the async tests: polled
//! every 50 ms, failing the test with what it waited for once the deadline
//! passes.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Wait until `cond` holds, failing the test after `secs`.
pub async fn wait_for<F, Fut>(what: &str, secs: u64, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
