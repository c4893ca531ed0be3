//! Shared test fixtures.

use std::time::Instant;

/// An arbitrary starting instant for tests on a virtual clock. `Instant`
/// has no constructor other than `now`; only the differences from this one
/// matter.
#[allow(clippy::disallowed_methods)]
pub(crate) fn epoch() -> Instant {
    Instant::now()
}
