//! Request bodies under watch: an upload body must keep coming (nothing for
//! `body_idle` is a 408), must keep a minimum average rate once past
//! `body_grace` (408: a client dripping a byte a second is cut off in
//! bounded time), and must not exceed the upload limit (413).
//!
//! [`Metered`] wraps the body's stream and enforces all three as the bytes
//! arrive; [`Meter`] is what it shares with the handler: bytes delivered,
//! bytes the handler took as file data or form fields, and the verdict when
//! the body was cut off (so a 408 or 413 reaches the client even through the
//! multipart parser's own error). The multipart parser buffers what it has
//! not yet handed out (a preamble, a part's headers); [`Metered`] refuses
//! to deliver more once `delivered - consumed` passes [`HEADROOM`], so that
//! buffer stays bounded, as does the number of parts (each one's headers
//! count against it). The rate rule is the plain function [`pace`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::gateway::error::GatewayError;
use crate::gateway::settings::GatewaySettings;

/// Bytes of a body the multipart parser may hold that are not file data or
/// form values (preambles, part headers, boundaries).
pub const HEADROOM: u64 = 1 << 20;

/// Whether `bytes` received `elapsed` after the body began is fast enough:
/// within `grace` anything is, after it at least `min_rate` bytes per
/// second on average since the start.
///
/// # Errors
/// A sentence saying how slow.
pub fn pace(elapsed: Duration, bytes: u64, grace: Duration, min_rate: u64) -> Result<(), String> {
    if elapsed <= grace {
        return Ok(());
    }
    let need = (min_rate as f64 * elapsed.as_secs_f64()) as u64;
    if bytes >= need {
        Ok(())
    } else {
        Err(format!(
            "{bytes} bytes in {:.0} s, below {min_rate} bytes per second",
            elapsed.as_secs_f64()
        ))
    }
}

/// What a [`Metered`] body shares with its handler.
#[derive(Debug, Default)]
pub struct Meter {
    delivered: AtomicU64,
    consumed: AtomicU64,
    verdict: Mutex<Option<GatewayError>>,
}

impl Meter {
    /// The handler took `n` bytes (file data or a form value).
    pub fn consumed(&self, n: u64) {
        self.consumed.fetch_add(n, Relaxed);
    }

    /// Why the body was cut off, if it was.
    pub fn verdict(&self) -> Option<GatewayError> {
        self.verdict
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn refuse(&self, e: GatewayError) -> std::io::Error {
        let msg = e.to_string();
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        std::io::Error::other(msg)
    }
}

/// A request body's stream under the gateway's limits.
pub struct Metered<S> {
    inner: S,
    meter: Arc<Meter>,
    started: Instant,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    grace: Duration,
    min_rate: u64,
    max: u64,
    headroom: Option<u64>,
}

impl<S> std::fmt::Debug for Metered<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered")
            .field("meter", &self.meter)
            .finish_non_exhaustive()
    }
}

impl<S> Metered<S> {
    /// `inner` under `settings`' limits; with `headroom`, at most that many
    /// bytes delivered and not consumed.
    pub fn new(inner: S, settings: &GatewaySettings, headroom: Option<u64>) -> (Self, Arc<Meter>) {
        let meter = Arc::new(Meter::default());
        let now = Instant::now();
        (
            Metered {
                inner,
                meter: meter.clone(),
                started: now,
                idle: settings.body_idle,
                idle_timer: Box::pin(tokio::time::sleep_until(now + settings.body_idle)),
                grace: settings.body_grace,
                min_rate: settings.body_min_rate,
                // The file, plus room for a form's other parts.
                max: settings.max_upload.saturating_add(headroom.unwrap_or(0)),
                headroom,
            },
            meter,
        )
    }
}

impl<S, E> Stream for Metered<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let m = &this.meter;
        if let Some(room) = this.headroom {
            let held = m
                .delivered
                .load(Relaxed)
                .saturating_sub(m.consumed.load(Relaxed));
            if held > room {
                return Poll::Ready(Some(Err(m.refuse(GatewayError::BadRequest(format!(
                    "more than {room} bytes of form without data (a malformed or hostile multipart body)"
                ))))));
            }
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                let total = m.delivered.fetch_add(b.len() as u64, Relaxed) + b.len() as u64;
                if total > this.max {
                    return Poll::Ready(Some(Err(m.refuse(GatewayError::TooLarge(this.max)))));
                }
                let now = Instant::now();
                if let Err(why) = pace(now - this.started, total, this.grace, this.min_rate) {
                    return Poll::Ready(Some(Err(m.refuse(GatewayError::SlowBody(why)))));
                }
                this.idle_timer.as_mut().reset(now + this.idle);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(format!(
                "reading the request body: {e}"
            ))))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.idle_timer.as_mut().poll(cx).is_ready() {
                    let idle = this.idle;
                    return Poll::Ready(Some(Err(m.refuse(GatewayError::SlowBody(format!(
                        "nothing for {:.0} s",
                        idle.as_secs_f64()
                    ))))));
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn the_pace_rule() {
        let g = Duration::from_secs(30);
        assert!(pace(Duration::from_secs(10), 0, g, 1000).is_ok(), "grace");
        assert!(pace(Duration::from_secs(40), 40_000, g, 1000).is_ok());
        assert!(pace(Duration::from_secs(40), 39_999, g, 1000).is_err());
    }

    fn settings() -> GatewaySettings {
        let mut s = GatewaySettings::new("127.0.0.1:1".parse().unwrap());
        s.max_upload = 10;
        s.body_idle = Duration::from_secs(5);
        s.body_grace = Duration::from_secs(10);
        s.body_min_rate = 100;
        s
    }

    #[tokio::test(start_paused = true)]
    async fn too_large_stopped_and_dripping_bodies_are_cut_off_with_their_reason() {
        // Too large.
        let chunks =
            futures_util::stream::iter(vec![Ok::<_, String>(Bytes::from_static(b"123456")); 2]);
        let (mut m, meter) = Metered::new(chunks, &settings(), None);
        assert!(m.next().await.unwrap().is_ok());
        assert!(m.next().await.unwrap().is_err());
        assert!(matches!(meter.verdict(), Some(GatewayError::TooLarge(10))));
        // Stopped: nothing after the first byte.
        let stalled = futures_util::stream::iter(vec![Ok::<_, String>(Bytes::from_static(b"1"))])
            .chain(futures_util::stream::pending());
        let (mut m, meter) = Metered::new(stalled, &settings(), None);
        assert!(m.next().await.unwrap().is_ok());
        assert!(m.next().await.unwrap().is_err());
        assert!(matches!(meter.verdict(), Some(GatewayError::SlowBody(_))));
        // Dripping: a byte every four seconds, never idle five, too slow
        // once past the grace.
        let drip = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Some((Ok::<_, String>(Bytes::from_static(b"x")), ()))
        });
        let mut s = settings();
        s.max_upload = 1 << 20;
        let (mut m, meter) = Metered::new(Box::pin(drip), &s, None);
        let mut n = 0;
        while let Some(Ok(_)) = m.next().await {
            n += 1;
        }
        assert!((2..=4).contains(&n), "{n} bytes before the cut");
        assert!(matches!(meter.verdict(), Some(GatewayError::SlowBody(_))));
    }

    #[tokio::test]
    async fn a_form_may_not_hold_much_that_is_not_data() {
        let chunks =
            futures_util::stream::iter(vec![Ok::<_, String>(Bytes::from(vec![b'-'; 700_000])); 3]);
        let (mut m, meter) = Metered::new(chunks, &settings_big(), Some(HEADROOM));
        assert!(m.next().await.unwrap().is_ok());
        assert!(m.next().await.unwrap().is_ok());
        meter.consumed(700_000);
        assert!(m.next().await.unwrap().is_ok(), "consumed: room again");
        meter.consumed(1_400_000);
        assert!(m.next().await.is_none());
        let chunks =
            futures_util::stream::iter(vec![Ok::<_, String>(Bytes::from(vec![b'-'; 700_000])); 3]);
        let (mut m, meter) = Metered::new(chunks, &settings_big(), Some(HEADROOM));
        assert!(m.next().await.unwrap().is_ok());
        assert!(m.next().await.unwrap().is_ok());
        assert!(
            m.next().await.unwrap().is_err(),
            "1.4 MB held, nothing consumed"
        );
        assert!(matches!(meter.verdict(), Some(GatewayError::BadRequest(_))));
    }

    fn settings_big() -> GatewaySettings {
        let mut s = settings();
        s.max_upload = 1 << 30;
        s
    }
}
