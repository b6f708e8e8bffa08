//! Telling results in the order their trials were asked
//! (`executor.tell_order = "trial"`).
//!
//! With several workers, results finish in an order that depends on timing;
//! an optimizer told them as they finish asks differently from one run to
//! the next. [`InOrder`] holds back results that arrive before those of
//! earlier trials and releases them in ask order. The run loop asks one
//! trial after each tell and keeps at most `window` trials
//! (`executor.tell_window`) asked but not told, so the optimizer sees the
//! same sequence of asks and tells whatever the timing and the number of
//! workers; trials asked while every worker is busy wait for one.

use std::collections::{HashMap, VecDeque};

use dsnn_search::Trial;

use crate::executor::{TrialReport, TrialTask};

/// A trial's result that has come back, waiting for its turn.
#[derive(Debug, Clone)]
pub(crate) struct Arrived {
    /// The trial.
    pub trial: Trial,
    /// What came back.
    pub report: TrialReport,
    /// The run's elapsed seconds when it came back.
    pub at: f64,
}

/// The reorder buffer between the executor and the optimizer.
#[derive(Debug)]
pub(crate) struct InOrder {
    window: usize,
    untold: VecDeque<u64>,
    arrived: HashMap<u64, Arrived>,
    waiting: VecDeque<TrialTask>,
}

impl InOrder {
    /// A buffer allowing `window` trials asked and not yet told (at least
    /// one), starting with `untold` (trials asked in earlier sessions and
    /// not told, in ask order).
    pub fn new(window: usize, untold: impl IntoIterator<Item = u64>) -> Self {
        InOrder {
            window: window.max(1),
            untold: untold.into_iter().collect(),
            arrived: HashMap::new(),
            waiting: VecDeque::new(),
        }
    }

    /// How many trials may be asked now.
    pub fn room(&self) -> usize {
        self.window.saturating_sub(self.untold.len())
    }

    /// Notes a newly asked trial (it is told after every trial asked
    /// before) and queues it for a worker.
    pub fn asked(&mut self, trial: Trial) {
        self.untold.push_back(trial.id);
        self.waiting.push_back(TrialTask { trial, attempt: 0 });
    }

    /// The next asked trial waiting for a free worker.
    pub fn next_to_run(&mut self) -> Option<TrialTask> {
        self.waiting.pop_front()
    }

    /// Takes a result that came back. A trial the buffer does not wait for
    /// (none of its asks) is released at once by the next [`InOrder::next`].
    pub fn arrive(&mut self, arrived: Arrived) {
        let id = arrived.trial.id;
        if !self.untold.contains(&id) {
            self.untold.push_front(id);
        }
        self.arrived.insert(id, arrived);
    }

    /// The next result to tell, if the earliest untold trial has come back.
    pub fn next(&mut self) -> Option<Arrived> {
        let first = *self.untold.front()?;
        let arrived = self.arrived.remove(&first)?;
        self.untold.pop_front();
        Some(arrived)
    }

    /// Every result that came back, in ask order, whether or not earlier
    /// trials have (for a session that stops: they are logged rather than
    /// run again).
    pub fn drain(&mut self) -> Vec<Arrived> {
        let mut out = Vec::new();
        self.untold.retain(|id| match self.arrived.remove(id) {
            Some(a) => {
                out.push(a);
                false
            }
            None => true,
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsnn_search::Configuration;

    fn arrived(id: u64) -> Arrived {
        Arrived {
            trial: Trial {
                id,
                config: Configuration::default(),
                budget: 1.0,
            },
            report: TrialReport::failed(id, format!("trial {id}"), 0.0, "t".into()),
            at: 0.0,
        }
    }

    fn ids(v: &[Arrived]) -> Vec<u64> {
        v.iter().map(|a| a.trial.id).collect()
    }

    #[test]
    fn results_are_released_in_ask_order_and_the_window_bounds_asks() {
        let mut order = InOrder::new(3, []);
        assert_eq!(order.room(), 3);
        for id in 0..3 {
            order.asked(arrived(id).trial);
        }
        assert_eq!(order.room(), 0);
        let queued: Vec<u64> = std::iter::from_fn(|| order.next_to_run())
            .map(|t| t.trial.id)
            .collect();
        assert_eq!(queued, vec![0, 1, 2], "queued for workers in ask order");
        order.arrive(arrived(2));
        order.arrive(arrived(1));
        assert!(order.next().is_none(), "trial 0 has not come back");
        assert_eq!(order.room(), 0, "results held back still count");
        order.arrive(arrived(0));
        let told: Vec<u64> = std::iter::from_fn(|| order.next())
            .map(|a| a.trial.id)
            .collect();
        assert_eq!(told, vec![0, 1, 2]);
        assert_eq!(order.room(), 3);
    }

    #[test]
    fn a_resumed_buffer_waits_for_the_trials_of_earlier_sessions() {
        let mut order = InOrder::new(2, [7, 9]);
        assert_eq!(order.room(), 0);
        order.arrive(arrived(9));
        assert!(order.next().is_none());
        order.arrive(arrived(7));
        assert_eq!(order.next().map(|a| a.trial.id), Some(7));
        assert_eq!(order.next().map(|a| a.trial.id), Some(9));
    }

    #[test]
    fn a_result_it_does_not_wait_for_is_released_at_once_and_drain_keeps_order() {
        let mut order = InOrder::new(4, [1, 2, 3]);
        order.arrive(arrived(42));
        assert_eq!(order.next().map(|a| a.trial.id), Some(42));
        order.arrive(arrived(3));
        order.arrive(arrived(2));
        assert!(order.next().is_none());
        assert_eq!(ids(&order.drain()), vec![2, 3]);
        assert_eq!(order.room(), 3, "trial 1 is still untold");
        assert!(order.drain().is_empty());
    }

    #[test]
    fn the_window_is_at_least_one() {
        let order = InOrder::new(0, []);
        assert_eq!(order.room(), 1);
    }
}
