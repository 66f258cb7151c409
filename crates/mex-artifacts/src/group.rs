//! The group-commit protocol, shared by the index's transactions and the
//! store's directory fsyncs.
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

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, PoisonError};

/// One group-commit queue: `P` is a pending batch, `F` a failure's outcome.
#[derive(Debug)]
pub(crate) struct Group<P, F> {
    state: Mutex<State<P, F>>,
    done: Condvar,
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
}

impl<P: Default, F: Clone> Default for Group<P, F> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                pending: P::default(),
                joined: 0,
                next: 1,
                completed: 0,
                leader: false,
                failures: HashMap::new(),
            }),
            done: Condvar::new(),
        }
    }
}

impl<P: Default, F: Clone> Group<P, F> {
    /// Add work to the pending batch with `add`; returns the batch's number,
    /// which the caller must then [`Group::wait`] for (it counts as one of
    /// its waiters).
    pub(crate) fn enqueue(&self, add: impl FnOnce(&mut P)) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        add(&mut st.pending);
        st.joined += 1;
        st.next
    }

    /// Wait until batch `mine` has run (leading a batch when none is
    /// running: `run` runs it, `panicked` names the failure when `run`
    /// panics) and return its outcome.
    pub(crate) fn wait(
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
            let batch_number = st.next;
            st.next += 1;
            let waiters = std::mem::take(&mut st.joined);
            let batch = std::mem::take(&mut st.pending);
            drop(st);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(batch)))
                .unwrap_or_else(|_| Err(panicked()));
            st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.completed = batch_number;
            st.leader = false;
            if let Err(failure) = outcome {
                st.failures.insert(batch_number, (waiters, failure));
            }
            self.done.notify_all();
        }
    }

    /// Test view: no leader, nothing pending, no outcome left untaken, and
    /// every batch numbered so far has run.
    #[cfg(test)]
    pub(crate) fn settled(&self) -> bool {
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
}
