//! Resuming a run whose trial log no longer replays (the optimizer or dsnn
//! changed since it was written): a fresh optimizer takes every logged
//! trial as its own ([`Optimizer::adopt`]) and is told every finished
//! result; trials in flight run again. An optimizer that cannot adopt
//! starts afresh behind [`IdOffset`], so that its trial ids never collide
//! with the logged ones.

use dsnn_search::{Optimizer, OptimizerError, Outcome, Trial, TrialId};

use crate::executor::DEFAULT_TRIAL_ID;
use crate::store::History;

/// How the fresh optimizer took over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmStart {
    /// It adopted the logged trials and learned every finished result.
    Adopted,
    /// It could not adopt them: it starts afresh, its trial ids moved past
    /// the logged ones.
    Afresh,
}

/// Makes `fresh` take over from the log in `h`: adopts every asked trial and
/// tells it every finished result, or wraps it in [`IdOffset`].
pub fn take_over(
    mut fresh: Box<dyn Optimizer>,
    h: &History,
) -> Result<(Box<dyn Optimizer>, WarmStart), OptimizerError> {
    let asked: Vec<Trial> = h
        .events
        .iter()
        .filter_map(|e| match e {
            dsnn_search::Event::Ask { trials, .. } => Some(trials.clone()),
            dsnn_search::Event::Tell { .. } => None,
        })
        .flatten()
        .collect();
    if fresh.adopt(&asked)? {
        for (t, r) in h.results.iter().filter(|(t, _)| t.id != DEFAULT_TRIAL_ID) {
            fresh.tell(t.id, r.outcome.clone())?;
        }
        return Ok((fresh, WarmStart::Adopted));
    }
    let offset = asked
        .iter()
        .map(|t| t.id.saturating_add(1))
        .max()
        .unwrap_or(0);
    Ok((
        Box::new(IdOffset {
            inner: fresh,
            offset,
        }),
        WarmStart::Afresh,
    ))
}

/// An optimizer whose trial ids start at `offset`; outcomes of trials below
/// it (asked by the optimizer it replaced) are dropped.
pub struct IdOffset {
    inner: Box<dyn Optimizer>,
    offset: TrialId,
}

impl Optimizer for IdOffset {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        let mut trials = self.inner.ask(n)?;
        for t in &mut trials {
            t.id = t.id.checked_add(self.offset).ok_or_else(|| {
                OptimizerError::Invalid(format!("trial id {} + {} overflows", t.id, self.offset))
            })?;
        }
        Ok(trials)
    }

    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        match id.checked_sub(self.offset) {
            Some(own) => self.inner.tell(own, outcome),
            None => Ok(()),
        }
    }
}
