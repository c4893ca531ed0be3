//! Dying by a signal, as a command stopped by one should.
//!
//! `put` and `get` catch SIGINT, SIGTERM and SIGHUP to remove their
//! temporary files (see `files::on_workers`). Having done so, they must not
//! exit with a status of their own: a parent tells "stopped by Ctrl-C" from
//! "failed" only by `WIFSIGNALED`, and a shell running
//! `for f in *; do grapevine put "$f"; done` stops the loop at Ctrl-C only
//! if the command died by SIGINT (bash, "wait and cooperative exit"). So the
//! signal's disposition goes back to the default and the signal is raised
//! again, the convention of programs that clean up on a signal.
//!
//! The unsafe code here is two calls into the C library that pass no
//! pointer: `signal(2)` with `SIG_DFL` and `raise(3)`.

#![allow(unsafe_code)]

/// Die by signal `sig` (`libc::SIGINT`, ...): its disposition reset to the
/// default, then raised on this thread. Should the process outlive it (the
/// signal blocked by the caller's mask), it exits with 128 + `sig`, the
/// status a shell gives a command a signal ended.
pub fn die_by(sig: i32) -> ! {
    // SAFETY: SIG_DFL installs no handler of ours and no pointer is passed;
    // raise sends the signal to the calling thread, whose default action
    // for these signals ends the process.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}
