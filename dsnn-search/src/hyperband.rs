//! Multi-objective Hyperband: brackets from a [`FidelitySchedule`], promotion
//! within a rung by non-dominated rank with ties broken by crowding distance or
//! hypervolume contribution, and a pluggable [`Proposer`] for the configurations
//! that start each bracket (random: MO-Hyperband proper; ParEGO: the paper's
//! combination "Hyperband schedule + ParEGO").

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::fidelity::{Bracket, FidelitySchedule};
use crate::optimizer::{
    Observation, Optimizer, OptimizerError, Outcome, Proposer, Trial, TrialBook, TrialId,
};
use crate::pareto::{select_by_rank, TieBreak};
use crate::space::Configuration;

struct Member {
    config: Configuration,
    trial: Option<TrialId>,
    outcome: Option<Outcome>,
}

struct BracketRun {
    id: u64,
    plan: Bracket,
    rung: usize,
    members: Vec<Member>,
}

/// Hyperband with multi-objective promotion and any proposer.
///
/// Brackets run as soon as there is work: when every trial of the open rungs has
/// been handed out, `ask` opens the next bracket of the schedule (cycling), so
/// parallel workers never starve. A rung is promoted once all its trials are
/// told; failed trials are never promoted and never ranked.
pub struct HyperbandOptimizer<P> {
    brackets: Vec<Bracket>,
    proposer: P,
    tie_break: TieBreak,
    rng: ChaCha8Rng,
    book: TrialBook,
    runs: Vec<BracketRun>,
    next_bracket: usize,
    next_run_id: u64,
    slots: BTreeMap<TrialId, (u64, usize)>,
}

impl<P: Proposer> HyperbandOptimizer<P> {
    /// Hyperband over `schedule` with `proposer` for new configurations.
    pub fn new(
        schedule: &dyn FidelitySchedule,
        proposer: P,
        seed: u64,
    ) -> Result<Self, OptimizerError> {
        let brackets = schedule.brackets();
        if brackets.is_empty() || brackets.iter().any(|b| b.rungs.is_empty()) {
            return Err(OptimizerError::Invalid(
                "schedule has an empty bracket".into(),
            ));
        }
        Ok(HyperbandOptimizer {
            brackets,
            proposer,
            tie_break: TieBreak::Crowding,
            rng: ChaCha8Rng::seed_from_u64(seed),
            book: TrialBook::default(),
            runs: Vec::new(),
            next_bracket: 0,
            next_run_id: 0,
            slots: BTreeMap::new(),
        })
    }

    /// Break promotion ties by `tie` (crowding distance by default).
    pub fn with_tie_break(mut self, tie: TieBreak) -> Self {
        self.tie_break = tie;
        self
    }

    /// Every finished trial, in the order told.
    pub fn history(&self) -> &[Observation] {
        self.book.history()
    }

    fn open_bracket(&mut self) -> Result<(), OptimizerError> {
        let plan = self.brackets[self.next_bracket % self.brackets.len()].clone();
        self.next_bracket += 1;
        let pending = self.book.pending_configs();
        let configs = self.proposer.propose(
            plan.rungs[0].n_configs,
            self.book.history(),
            &pending,
            &mut self.rng,
        )?;
        if configs.is_empty() {
            return Err(OptimizerError::Invalid(format!(
                "proposer `{}` proposed no configuration",
                self.proposer.name()
            )));
        }
        log::debug!(
            "hyperband: opening bracket {} ({} rungs, {} configurations)",
            self.next_run_id,
            plan.rungs.len(),
            configs.len()
        );
        self.runs.push(BracketRun {
            id: self.next_run_id,
            plan,
            rung: 0,
            members: configs
                .into_iter()
                .map(|config| Member {
                    config,
                    trial: None,
                    outcome: None,
                })
                .collect(),
        });
        self.next_run_id += 1;
        Ok(())
    }

    /// Promote (or close) a run whose current rung is complete.
    fn advance(&mut self, run_index: usize) {
        let run = &mut self.runs[run_index];
        let ok: Vec<(usize, Vec<f64>)> = run
            .members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match &m.outcome {
                Some(Outcome::Success(f)) => Some((i, f.clone())),
                _ => None,
            })
            .collect();
        let next = run.rung + 1;
        if next >= run.plan.rungs.len() || ok.is_empty() {
            self.runs.remove(run_index);
            return;
        }
        let k = run.plan.rungs[next].n_configs;
        let objs: Vec<&Vec<f64>> = ok.iter().map(|(_, f)| f).collect();
        let chosen = select_by_rank(&objs, k, self.tie_break);
        let members = chosen
            .into_iter()
            .map(|j| Member {
                config: run.members[ok[j].0].config.clone(),
                trial: None,
                outcome: None,
            })
            .collect();
        run.members = members;
        run.rung = next;
        log::debug!(
            "hyperband: bracket {} promotes {} to budget {}",
            run.id,
            run.members.len(),
            run.plan.rungs[next].budget
        );
    }
}

impl<P: Proposer> Optimizer for HyperbandOptimizer<P> {
    fn name(&self) -> String {
        format!("hyperband+{}", self.proposer.name())
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let mut issued = false;
            for run in self.runs.iter_mut() {
                let budget = run.plan.rungs[run.rung].budget;
                for (mi, m) in run.members.iter_mut().enumerate() {
                    if out.len() >= n {
                        break;
                    }
                    if m.trial.is_none() {
                        let t = self.book.issue(m.config.clone(), budget);
                        m.trial = Some(t.id);
                        self.slots.insert(t.id, (run.id, mi));
                        out.push(t);
                        issued = true;
                    }
                }
            }
            if !issued && out.len() < n {
                self.open_bracket()?;
            }
        }
        Ok(out)
    }

    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        let obs = self.book.accept(id, outcome)?;
        // A trial the book knows but no bracket holds was adopted: it joins
        // the proposer's history only.
        let Some((run_id, mi)) = self.slots.remove(&id) else {
            return Ok(());
        };
        let ri = self
            .runs
            .iter()
            .position(|r| r.id == run_id)
            .ok_or(OptimizerError::UnknownTrial(id))?;
        self.runs[ri].members[mi].outcome = Some(obs.outcome);
        if self.runs[ri].members.iter().all(|m| m.outcome.is_some()) {
            self.advance(ri);
        }
        Ok(())
    }

    /// Adopted trials join the proposer's history when told; brackets start
    /// afresh.
    fn adopt(&mut self, trials: &[Trial]) -> Result<bool, OptimizerError> {
        self.book.adopt(trials)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fidelity::Hyperband;
    use crate::pareto::non_dominated;
    use crate::single::RandomProposer;
    use crate::space::{ConfigurationSpace, Hyperparameter, SearchSpace};
    use std::sync::Arc;

    fn space() -> Arc<dyn SearchSpace> {
        Arc::new(
            ConfigurationSpace::new(
                vec![Hyperparameter::float("x", 0.0, 1.0, false, None)],
                vec![],
                vec![],
            )
            .unwrap(),
        )
    }

    /// Objectives: a 2-D trade-off in x, shifted by a noise term that shrinks
    /// with budget, so ranks differ by budget.
    fn objectives(c: &Configuration, budget: f64) -> Vec<f64> {
        let x = c.get_f64("x").unwrap();
        let noise = ((x * 97.0).sin() * 0.1) / budget;
        vec![x + noise, (1.0 - x).powi(2) + noise]
    }

    fn round2(b: f64) -> f64 {
        (b * 100.0).round() / 100.0
    }

    #[test]
    fn sequential_brackets_follow_the_schedule_and_promote_by_rank() {
        let hb = Hyperband::new(2.0, 20.0, 3.0).unwrap();
        let mut o = HyperbandOptimizer::new(&hb, RandomProposer::new(space()), 1).unwrap();
        let mut budgets = Vec::new();
        let mut rung: Vec<(Configuration, Vec<f64>)> = Vec::new();
        let mut last_budget = 0.0;
        for _ in 0..(9 + 3 + 1 + 5 + 1 + 3) {
            let t = o.ask(1).unwrap().remove(0);
            if t.budget != last_budget && !rung.is_empty() && t.budget > last_budget {
                // A promotion: the promoted configurations come from the
                // non-dominated part of the previous rung first.
                let objs: Vec<Vec<f64>> = rung.iter().map(|(_, f)| f.clone()).collect();
                let nd = non_dominated(&objs);
                if !nd.is_empty() {
                    let promoted_is_nd = nd.iter().any(|&i| rung[i].0 == t.config);
                    assert!(promoted_is_nd, "promoted a dominated configuration");
                }
                rung.clear();
            } else if t.budget < last_budget {
                rung.clear();
            }
            last_budget = t.budget;
            budgets.push(round2(t.budget));
            let f = objectives(&t.config, t.budget);
            rung.push((t.config.clone(), f.clone()));
            o.tell(t.id, Outcome::Success(f)).unwrap();
        }
        let mut expect = vec![2.22; 9];
        expect.extend([6.67; 3]);
        expect.push(20.0);
        expect.extend([6.67; 5]);
        expect.push(20.0);
        expect.extend([20.0; 3]);
        assert_eq!(budgets, expect);
        // The cycle restarts with the most aggressive bracket.
        assert_eq!(round2(o.ask(1).unwrap()[0].budget), 2.22);
    }

    #[test]
    fn parallel_asks_open_brackets_and_failures_are_not_promoted() {
        let hb = Hyperband::new(2.0, 20.0, 3.0).unwrap();
        let mut o = HyperbandOptimizer::new(&hb, RandomProposer::new(space()), 2)
            .unwrap()
            .with_tie_break(TieBreak::HypervolumeContribution);
        let t = o.ask(20).unwrap();
        let b: Vec<f64> = t.iter().map(|t| round2(t.budget)).collect();
        let mut expect = vec![2.22; 9];
        expect.extend([6.67; 5]);
        expect.extend([20.0; 3]);
        expect.extend([2.22; 3]);
        assert_eq!(b, expect);
        // In the first bracket only two trials succeed: only they are promoted,
        // though the next rung has room for three.
        for (i, tr) in t.iter().enumerate().take(9) {
            let out = if i == 2 || i == 7 {
                Outcome::Success(objectives(&tr.config, tr.budget))
            } else {
                Outcome::Failure("oom".into())
            };
            o.tell(tr.id, out).unwrap();
        }
        let next = o.ask(3).unwrap();
        assert_eq!(round2(next[0].budget), 6.67);
        assert_eq!(round2(next[1].budget), 6.67);
        assert_eq!(next[0].config, t[2].config);
        assert_eq!(next[1].config, t[7].config);
        // The third trial comes from the partly issued second run of bracket 0.
        assert_eq!(round2(next[2].budget), 2.22);
    }
}
