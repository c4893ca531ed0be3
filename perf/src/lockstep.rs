//! Threads that time the same work at once: each waits for the others
//! before each timed section ([`step`]), so every section is timed while
//! every other thread runs the same section. `bench ceiling` uses it to
//! time each stage on every core at once, as a put or a get loads them, so
//! what one core's rate loses to the other's (shared caches and memory,
//! the kernel's locks, a hypervisor's scheduling) is in the ceiling.
//!
//! A thread that ends (its work done, or failed) leaves the group for
//! good ([`Member`]'s drop): from then on nobody waits, so a thread that
//! failed halfway cannot leave the others waiting for ever.

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    arrived: usize,
    generation: u64,
    broken: bool,
}

/// A group of threads in lockstep.
#[derive(Debug)]
pub struct Lockstep {
    threads: usize,
    state: Mutex<State>,
    turn: Condvar,
}

thread_local! {
    static GROUP: RefCell<Option<Arc<Lockstep>>> = const { RefCell::new(None) };
}

impl Lockstep {
    /// A group of `threads` threads.
    pub fn new(threads: usize) -> Arc<Lockstep> {
        Arc::new(Lockstep {
            threads: threads.max(1),
            state: Mutex::new(State::default()),
            turn: Condvar::new(),
        })
    }

    /// Make the calling thread a member until the returned guard drops.
    pub fn join(self: &Arc<Lockstep>) -> Member {
        GROUP.with(|g| *g.borrow_mut() = Some(self.clone()));
        Member(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait(&self) {
        let mut s = self.lock();
        if s.broken {
            return;
        }
        s.arrived += 1;
        if s.arrived >= self.threads {
            s.arrived = 0;
            s.generation += 1;
            self.turn.notify_all();
            return;
        }
        let generation = s.generation;
        while s.generation == generation && !s.broken {
            s = self.turn.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A thread's membership of a [`Lockstep`]; dropping it leaves the group
/// (and ends all waiting in it).
#[derive(Debug)]
pub struct Member(Arc<Lockstep>);

impl Drop for Member {
    fn drop(&mut self) {
        GROUP.with(|g| *g.borrow_mut() = None);
        self.0.lock().broken = true;
        self.0.turn.notify_all();
    }
}

/// Wait until every thread of the calling thread's group has come here
/// (at once if it is in none, or the group is broken).
pub fn step() {
    let group = GROUP.with(|g| g.borrow().clone());
    if let Some(g) = group {
        g.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    /// No thread starts section i + 1 before every thread has started
    /// section i.
    #[test]
    fn threads_start_each_section_together() {
        let group = Lockstep::new(3);
        let started = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let (group, started) = (group.clone(), started.clone());
                s.spawn(move || {
                    let _member = group.join();
                    for i in 0..20usize {
                        step();
                        // Everyone has reached section i; nobody is past
                        // section i's step yet.
                        let n = started.fetch_add(1, SeqCst);
                        assert!(n >= i * 3 && n < (i + 1) * 3, "thread {t} section {i}: {n}");
                        std::thread::sleep(Duration::from_micros(200 * t));
                        step();
                    }
                });
            }
        });
        assert_eq!(started.load(SeqCst), 60);
    }

    /// A thread that leaves early (as one whose stage failed) leaves no
    /// one waiting.
    #[test]
    fn a_thread_that_leaves_ends_the_waiting() {
        let group = Lockstep::new(2);
        let (done, finished) = std::sync::mpsc::channel();
        let g = group.clone();
        let short = std::thread::spawn(move || {
            let _member = g.join();
            step();
            // Leaves after one section.
        });
        let g = group.clone();
        std::thread::spawn(move || {
            let _member = g.join();
            for _ in 0..5 {
                step();
            }
            let _ = done.send(());
        });
        short.join().unwrap();
        assert!(
            finished.recv_timeout(Duration::from_secs(30)).is_ok(),
            "the other thread still waits"
        );
        // Outside any group, a step does not wait.
        step();
    }
}
