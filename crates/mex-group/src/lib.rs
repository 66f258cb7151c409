//! The group-commit protocol, shared by the artifact store (its index's
//! transactions and its directory fsyncs) and the flight recorder (its
//! write transactions).
//!
//! This crate owns only the protocol: who runs a batch, who waits, which
//! outcome each caller gets. It knows nothing of what a batch holds or how
//! it is made durable; its users do.
//!
//! Callers add work to a pending batch ([`Group::enqueue`]) and then wait
//! for it ([`Group::wait`]). The first waiter that finds no batch running
//! becomes the leader: it takes the whole pending batch, runs it once for
//! everyone, records the outcome and wakes the others. Each caller returns
//! the outcome of the batch its work was in. A failed batch's outcome is
//! kept until each of its waiters has taken it, so a waiter that wakes late
//! never mistakes another batch's outcome for its own; a panic while
//! running fails the batch instead of leaving a leader that never finishes
//! (every later caller would wait forever).
//!
//! A group made with [`Group::gathering`] lets a new leader wait a little
//! for the callers the last batch answered: they are usually preparing
//! their next work at that instant, and without the wait two halves of a
//! crowd would take turns, each paying its own commit. The wait ends as
//! soon as as many callers have joined as the last batch had, and never
//! lasts longer than the last batch's run nor the bound given. A lone
//! caller (last batch of one) never waits.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One group-commit queue: `P` is a pending batch, `F` a failure's outcome.
#[derive(Debug)]
pub struct Group<P, F> {
    state: Mutex<State<P, F>>,
    done: Condvar,
    /// Signalled when a caller joins while a leader gathers.
    arrived: Condvar,
    /// The longest a leader gathers (zero: never).
    max_gather: Duration,
}

#[derive(Debug)]
struct State<P, F> {
    pending: P,
    /// Callers whose work is in `pending` (the waiters of batch `next`).
    joined: usize,
    /// The number of the batch that will take `pending`.
    next: u64,
    /// The last batch that finished.
    completed: u64,
    /// A leader is running a batch.
    leader: bool,
    /// Failed batches whose outcome not every waiter has taken yet: (waiters
    /// left, outcome). At most one per waiting caller.
    failures: HashMap<u64, (usize, F)>,
    /// A leader is waiting for callers to join before taking the batch.
    gathering: bool,
    /// Callers in the last batch run, and how long it ran.
    last_waiters: usize,
    last_run: Duration,
}

impl<P: Default, F: Clone> Default for Group<P, F> {
    /// A group whose leader takes the pending batch at once.
    fn default() -> Self {
        Self::gathering(Duration::ZERO)
    }
}

impl<P: Default, F: Clone> Group<P, F> {
    /// A group whose leader may gather callers for at most `max_gather`
    /// (see the crate docs).
    pub fn gathering(max_gather: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                pending: P::default(),
                joined: 0,
                next: 1,
                completed: 0,
                leader: false,
                failures: HashMap::new(),
                gathering: false,
                last_waiters: 0,
                last_run: Duration::ZERO,
            }),
            done: Condvar::new(),
            arrived: Condvar::new(),
            max_gather,
        }
    }

    /// Add work to the pending batch with `add`; returns the batch's number,
    /// which the caller must then [`Group::wait`] for (it counts as one of
    /// its waiters).
    pub fn enqueue(&self, add: impl FnOnce(&mut P)) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        add(&mut st.pending);
        st.joined += 1;
        // The gathering leader is woken once, when its group is complete.
        if st.gathering && st.joined >= st.last_waiters {
            self.arrived.notify_one();
        }
        st.next
    }

    /// As leader, before taking the batch: wait until as many callers have
    /// joined as the last batch had, at most the last run's time and
    /// `max_gather`.
    fn gather<'a>(
        &self,
        mut st: std::sync::MutexGuard<'a, State<P, F>>,
    ) -> std::sync::MutexGuard<'a, State<P, F>> {
        let bound = st.last_run.min(self.max_gather);
        if st.joined >= st.last_waiters || bound.is_zero() {
            return st;
        }
        let deadline = Instant::now() + bound;
        st.gathering = true;
        while st.joined < st.last_waiters {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .arrived
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        st.gathering = false;
        st
    }

    /// Wait until batch `mine` has run (leading a batch when none is
    /// running: `run` runs it, `panicked` names the failure when `run`
    /// panics) and return its outcome.
    ///
    /// `panicked` itself must not panic: it runs outside the guard, and a
    /// leader unwinding from it would leave every later caller waiting.
    pub fn wait(
        &self,
        mine: u64,
        mut run: impl FnMut(P) -> Result<(), F>,
        panicked: impl Fn() -> F,
    ) -> Result<(), F> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if st.completed >= mine {
                let Some((waiters, failure)) = st.failures.get_mut(&mine) else {
                    return Ok(());
                };
                *waiters = waiters.saturating_sub(1);
                let outcome = failure.clone();
                if *waiters == 0 {
                    st.failures.remove(&mine);
                }
                return Err(outcome);
            }
            if st.leader {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.leader = true;
            st = self.gather(st);
            let batch_number = st.next;
            st.next += 1;
            let waiters = std::mem::take(&mut st.joined);
            let batch = std::mem::take(&mut st.pending);
            drop(st);
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(batch)))
                .unwrap_or_else(|_| Err(panicked()));
            let ran = started.elapsed();
            st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.completed = batch_number;
            st.leader = false;
            st.last_waiters = waiters;
            st.last_run = ran;
            if let Err(failure) = outcome {
                st.failures.insert(batch_number, (waiters, failure));
            }
            self.done.notify_all();
        }
    }

    /// Test view: a leader is gathering callers.
    #[cfg(test)]
    fn is_gathering(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .gathering
    }

    /// Test view (for this crate's and its users' tests): no leader, nothing pending, no outcome left untaken, and
    /// every batch numbered so far has run.
    #[doc(hidden)]
    pub fn settled(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        !st.leader && st.joined == 0 && st.failures.is_empty() && st.completed + 1 == st.next
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

    use super::*;

    #[test]
    fn a_panicking_batch_fails_its_waiters_and_the_next_batch_runs() {
        let group: Group<Vec<u32>, String> = Group::default();
        let mine = group.enqueue(|p| p.push(1));
        let outcome = group.wait(mine, |_| panic!("boom"), || "panicked".to_owned());
        assert_eq!(outcome, Err("panicked".to_owned()));
        let mut ran = Vec::new();
        let next = group.enqueue(|p| p.push(2));
        group
            .wait(
                next,
                |batch| {
                    ran.extend(batch);
                    Ok(())
                },
                String::new,
            )
            .unwrap();
        assert_eq!(ran, [2]);
        assert!(group.settled());
    }

    #[test]
    fn a_late_waiter_gets_its_own_batchs_outcome() {
        let group: Group<Vec<u32>, String> = Group::default();
        let ok = |_| Ok(());
        let fail = |_| Err("failed".to_owned());
        let late = group.enqueue(|p| p.push(1));
        // Another caller leads that batch (it succeeds), then many fail.
        let other = group.enqueue(|p| p.push(2));
        group.wait(other, ok, String::new).unwrap();
        for _ in 0..100 {
            let n = group.enqueue(|p| p.push(3));
            group.wait(n, fail, String::new).unwrap_err();
        }
        group.wait(late, fail, String::new).unwrap();
        // A late waiter of a failed batch is told it failed.
        let failed = group.enqueue(|p| p.push(4));
        let other = group.enqueue(|p| p.push(5));
        group.wait(other, fail, String::new).unwrap_err();
        for _ in 0..100 {
            let n = group.enqueue(|p| p.push(6));
            group.wait(n, ok, String::new).unwrap();
        }
        group.wait(failed, ok, String::new).unwrap_err();
        assert!(group.settled());
    }

    #[test]
    fn a_gathering_leader_takes_the_callers_that_join_while_it_gathers() {
        let group: std::sync::Arc<Group<Vec<u32>, String>> =
            std::sync::Arc::new(Group::gathering(Duration::from_secs(60)));
        // A batch of two callers that ran for 3 s: the next leader gathers
        // until two have joined, for at most 3 s.
        let first = group.enqueue(|p| p.push(1));
        let second = group.enqueue(|p| p.push(2));
        let slow = |_| {
            std::thread::sleep(Duration::from_secs(3));
            Ok(())
        };
        group.wait(first, slow, String::new).unwrap();
        group.wait(second, slow, String::new).unwrap();
        let batches = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (g, b) = (group.clone(), batches.clone());
        let leader = std::thread::spawn(move || {
            let mine = g.enqueue(|p| p.push(3));
            g.wait(
                mine,
                |batch| {
                    b.lock().unwrap().push(batch);
                    Ok(())
                },
                String::new,
            )
        });
        while !group.is_gathering() {
            std::thread::yield_now();
        }
        let late = group.enqueue(|p| p.push(4));
        group
            .wait(late, |_| Err("ran a second batch".to_owned()), String::new)
            .unwrap();
        leader.join().unwrap().unwrap();
        assert_eq!(*batches.lock().unwrap(), [vec![3, 4]]);
        assert!(group.settled());
    }

    /// Eight threads, each enqueueing and waiting 300 times, against a
    /// gathering group whose batches succeed, fail or panic depending on
    /// what they hold: every item runs in exactly one batch, every caller
    /// gets that batch's outcome (never another's), and no outcome is left
    /// behind.
    #[test]
    fn under_contention_each_caller_gets_its_own_batchs_outcome() {
        use std::sync::Arc;
        const THREADS: u32 = 8;
        const EACH: u32 = 300;
        let group: Arc<Group<Vec<u32>, u32>> = Arc::new(Group::gathering(Duration::from_millis(1)));
        // item -> (times run, whether its batch succeeded)
        let ran = Arc::new(Mutex::new(HashMap::<u32, (u32, bool)>::new()));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (group, ran) = (Arc::clone(&group), Arc::clone(&ran));
                std::thread::spawn(move || {
                    (0..EACH)
                        .map(|i| {
                            let item = t * 1000 + i;
                            let mine = group.enqueue(|p| p.push(item));
                            let outcome = group.wait(
                                mine,
                                |batch| {
                                    let first = batch.iter().copied().min().unwrap_or(0);
                                    let ok = first % 3 != 0;
                                    let mut ran = ran.lock().unwrap();
                                    for item in &batch {
                                        let seen = ran.entry(*item).or_insert((0, ok));
                                        seen.0 += 1;
                                        seen.1 = ok;
                                    }
                                    drop(ran);
                                    match (ok, first % 7 == 0) {
                                        (true, _) => Ok(()),
                                        (false, true) => panic!("batch {first} panics"),
                                        (false, false) => Err(first),
                                    }
                                },
                                || u32::MAX,
                            );
                            (item, outcome.is_ok())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let told: Vec<(u32, bool)> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let ran = ran.lock().unwrap();
        assert_eq!(told.len(), (THREADS * EACH) as usize);
        let mut failures = 0;
        for (item, ok) in told {
            let (times, batch_ok) = ran[&item];
            assert_eq!(times, 1, "item {item} ran {times} times");
            assert_eq!(ok, batch_ok, "item {item} was told the wrong outcome");
            failures += usize::from(!ok);
        }
        // Not vacuous: both outcomes were told.
        assert!(failures > 0 && failures < ran.len(), "{failures} failures");
        assert!(group.settled());
    }

    /// A crowd's batch followed by a lone caller (the crowd gone): the
    /// leader's gather ends at its bound and the lone caller's batch runs
    /// alone.
    #[test]
    fn a_lone_caller_after_a_crowd_is_not_held_by_the_gather() {
        let group: Group<Vec<u32>, String> = Group::gathering(Duration::from_secs(60));
        let crowd: Vec<u64> = (0..8).map(|i| group.enqueue(|p| p.push(i))).collect();
        let slow = |_| {
            std::thread::sleep(Duration::from_millis(100));
            Ok(())
        };
        for mine in crowd {
            group.wait(mine, slow, String::new).unwrap();
        }
        let mut batches = Vec::new();
        let lone = group.enqueue(|p| p.push(9));
        group
            .wait(
                lone,
                |batch| {
                    batches.push(batch);
                    Ok(())
                },
                String::new,
            )
            .unwrap();
        assert_eq!(batches, [vec![9]]);
        assert!(group.settled());
    }
}
