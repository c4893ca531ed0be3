//! Exit codes and error sentences.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success (`check`: the file is healthy) |
//! | 1 | an error, printed as one sentence on standard error |
//! | 2 | bad usage (unknown command or option) |
//! | 3 | `check`: not healthy (fewer than N good shares), still readable |
//! | 4 | `check`: corrupt shares found, still readable |
//! | 5 | `check`: unrecoverable (fewer than k good shares, or none at all) |
//! | killed by the signal | `put` or `get` stopped by SIGINT, SIGTERM or SIGHUP: its temporary files removed, it dies by the signal (a shell shows 130, 143, 129) |

use grapevine_storage::client::Verdict;

/// An error.
pub const ERROR: u8 = 1;
/// Bad usage.
pub const USAGE: u8 = 2;
/// `check`: not healthy.
pub const UNHEALTHY: u8 = 3;
/// `check`: corrupt shares.
pub const CORRUPT: u8 = 4;
/// `check`: unrecoverable.
pub const UNRECOVERABLE: u8 = 5;

/// The exit codes, for `--help`.
pub const HELP: &str = "Exit codes: 0 success (check: healthy), 1 error, 2 bad usage; \
check also exits 3 (not healthy: fewer than N good shares), 4 (corrupt shares found) \
or 5 (unrecoverable: fewer than k good shares). A put or get stopped by SIGINT, SIGTERM or \
SIGHUP removes its temporary files, then dies by that signal (a shell shows 130, 143, 129).";

/// Bad usage found after parsing (options that cannot go together, values
/// that cannot work): printed as an error, exit [`USAGE`] as clap's own
/// usage errors do.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Return early with a [`Usage`] error.
macro_rules! usage {
    ($($t:tt)*) => {
        return Err($crate::exit::Usage(format!($($t)*)).into())
    };
}
pub(crate) use usage;

/// The exit code of an error: [`USAGE`] for a [`Usage`] error, else
/// [`ERROR`].
pub fn of_error(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Usage>().is_some() {
        USAGE
    } else {
        ERROR
    }
}

/// The exit code for a check's verdict.
pub fn of_verdict(v: Verdict) -> u8 {
    match v {
        Verdict::Healthy => 0,
        Verdict::Unhealthy => UNHEALTHY,
        Verdict::Corrupt => CORRUPT,
        Verdict::Unrecoverable => UNRECOVERABLE,
    }
}

/// Write one line to standard output.
///
/// # Errors
/// Standard output is closed (a pipe's reader left) or failing.
pub fn out(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_fmt(line)
        .and_then(|_| o.write_all(b"\n"))
        .and_then(|_| o.flush())
        .map_err(|e| anyhow::anyhow!("writing to standard output: {e}"))
}

/// `e` and its causes as one sentence: each cause is added only if the
/// message so far does not already say it (most of our errors print their
/// source themselves).
pub fn sentence(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_added_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io).context("reading /x/config.toml");
        assert_eq!(sentence(&e), "reading /x/config.toml: no such file");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io).context("reading /x: no such file");
        assert_eq!(sentence(&e), "reading /x: no such file");
    }

    #[test]
    fn verdicts_map_to_distinct_codes() {
        let codes: Vec<u8> = [
            Verdict::Healthy,
            Verdict::Unhealthy,
            Verdict::Corrupt,
            Verdict::Unrecoverable,
        ]
        .into_iter()
        .map(of_verdict)
        .collect();
        assert_eq!(codes, vec![0, 3, 4, 5]);
    }
}
