//! Repair without a coordinator: when a file's holders repair it.
//!
//! Each server periodically checks the files whose shares it holds (the
//! node's repair job), asking the first servers of each file's permuted
//! list which shares they hold. What it found goes to the [`Planner`], a
//! sans-IO state machine on a given clock, which says whether to repair
//! now: the file must be below its threshold (default `happy`) for longer
//! than a grace period, and this server must be the live holder with the
//! lowest permuted rank (others take over later if it does not act);
//! failed repairs back off. The repair itself is
//! [`client::repair`](crate::client::repair), from the verify capability
//! the server's own share implies ([`verify_cap_of`](crate::chk::verify_cap_of)).
//! Which files a pass checks is the [`CheckSchedule`]'s business: a
//! healthy file every pass only by its first live holder, less often by
//! the others. See `docs/durability.md` for why this converges and what it costs.

mod planner;
mod schedule;

pub use planner::{Decision, Observation, Planner, PlannerConfig, Saved};
pub use schedule::{place, CheckSchedule, MAX_SPACING};
