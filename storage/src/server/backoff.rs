//! What the accept loop does when `accept` fails, sans-IO: wait and retry
//! with a growing delay, or give up on a listener that cannot recover.
//!
//! Most accept errors are the machine's state, not the listener's: out of
//! file descriptors (`EMFILE`, `ENFILE`), out of memory or buffers, a
//! connection reset before it was accepted. They pass, so the loop waits
//! and tries again: 10 ms, doubling to a cap of one second, reset by the
//! next success (mini-redis's server backs off the same way). Never
//! waiting would spin a core on `EMFILE` until a descriptor frees up; never
//! retrying, as `accept().await?` did, lost the listener for good on the
//! first one while the node still advertised storage. A few errors mean
//! the socket itself is gone (`EBADF`, `ENOTSOCK`, `EINVAL`: not
//! listening, say after a `shutdown`): those end the loop, and the node
//! stops advertising the storage role.

use std::time::Duration;

/// First delay after an error.
pub const FIRST_DELAY: Duration = Duration::from_millis(10);
/// Longest delay between tries.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// The accept loop's state between errors.
#[derive(Debug, Clone, Default)]
pub struct AcceptBackoff {
    next: Option<Duration>,
}

impl AcceptBackoff {
    /// An accept succeeded: the next error starts from the first delay.
    pub fn reset(&mut self) {
        self.next = None;
    }

    /// An accept failed with `e`: how long to wait before the next try, or
    /// `None` if the listener cannot recover.
    pub fn on_error(&mut self, e: &std::io::Error) -> Option<Duration> {
        if is_fatal(e) {
            return None;
        }
        let d = self.next.unwrap_or(FIRST_DELAY);
        self.next = Some((d * 2).min(MAX_DELAY));
        Some(d)
    }
}

/// Whether `e` says the listening socket itself is unusable.
pub fn is_fatal(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::BADF | Errno::NOTSOCK | Errno::INVAL | Errno::OPNOTSUPP | Errno::FAULT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: rustix::io::Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(errno.raw_os_error())
    }

    #[test]
    fn transient_errors_back_off_to_a_cap_and_fatal_ones_stop() {
        use rustix::io::Errno;
        let mut b = AcceptBackoff::default();
        let delays: Vec<_> = (0..10)
            .map(|_| b.on_error(&os(Errno::MFILE)).unwrap())
            .collect();
        assert_eq!(delays[0], FIRST_DELAY);
        assert_eq!(delays[1], FIRST_DELAY * 2);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*delays.last().unwrap(), MAX_DELAY);
        b.reset();
        assert_eq!(b.on_error(&os(Errno::NFILE)), Some(FIRST_DELAY));
        for transient in [Errno::NOBUFS, Errno::NOMEM, Errno::CONNABORTED, Errno::PERM] {
            assert!(b.on_error(&os(transient)).is_some());
        }
        for fatal in [Errno::BADF, Errno::NOTSOCK, Errno::INVAL] {
            assert_eq!(b.on_error(&os(fatal)), None);
        }
    }
}
