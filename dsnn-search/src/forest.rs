//! A small regression random forest, the surrogate of ParEGO (as in SMAC3:
//! bootstrapped trees, a random subset of 5/6 of the features per split,
//! minimum 3 samples to split and per leaf, predictive variance by the law of
//! total variance over trees and leaves).

use rand::{Rng, RngCore};

/// Random forest settings (SMAC3's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct ForestSettings {
    /// Number of trees.
    pub n_trees: usize,
    /// Fraction of the features tried at each split.
    pub feature_ratio: f64,
    /// A node with fewer samples becomes a leaf.
    pub min_samples_split: usize,
    /// Each child of a split keeps at least this many samples.
    pub min_samples_leaf: usize,
    /// Maximum tree depth.
    pub max_depth: usize,
    /// Fit each tree on a bootstrap resample.
    pub bootstrap: bool,
}

impl Default for ForestSettings {
    fn default() -> Self {
        ForestSettings {
            n_trees: 10,
            feature_ratio: 5.0 / 6.0,
            min_samples_split: 3,
            min_samples_leaf: 3,
            max_depth: 20,
            bootstrap: true,
        }
    }
}

#[derive(Clone, Debug)]
enum Node {
    Leaf {
        mean: f64,
        var: f64,
    },
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
}

#[derive(Clone, Debug)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn leaf(&self, x: &[f64]) -> (f64, f64) {
        let mut i = 0;
        loop {
            match &self.nodes[i] {
                Node::Leaf { mean, var } => return (*mean, *var),
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    i = if x[*feature] <= *threshold {
                        *left
                    } else {
                        *right
                    }
                }
            }
        }
    }
}

/// A fitted random forest regressor.
#[derive(Clone, Debug)]
pub struct RandomForest {
    trees: Vec<Tree>,
}

struct Builder<'a> {
    x: &'a [Vec<f64>],
    y: &'a [f64],
    s: &'a ForestSettings,
    n_features: usize,
    nodes: Vec<Node>,
}

fn mean_var(y: &[f64], idx: &[usize]) -> (f64, f64) {
    let n = idx.len() as f64;
    let mean = idx.iter().map(|&i| y[i]).sum::<f64>() / n;
    let var = idx.iter().map(|&i| (y[i] - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

impl Builder<'_> {
    fn build(&mut self, idx: &mut [usize], depth: usize, rng: &mut dyn RngCore) -> usize {
        let (mean, var) = mean_var(self.y, idx);
        let me = self.nodes.len();
        self.nodes.push(Node::Leaf { mean, var });
        if idx.len() < self.s.min_samples_split
            || idx.len() < 2 * self.s.min_samples_leaf
            || depth >= self.s.max_depth
            || var <= 1e-14 * (1.0 + mean * mean)
        {
            return me;
        }
        let d = self.x[0].len();
        // Random feature subset (partial Fisher-Yates).
        let mut feats: Vec<usize> = (0..d).collect();
        for k in 0..self.n_features {
            let j = rng.random_range(k..d);
            feats.swap(k, j);
        }
        let n = idx.len();
        let total_sum: f64 = idx.iter().map(|&i| self.y[i]).sum();
        let total_sq: f64 = idx.iter().map(|&i| self.y[i] * self.y[i]).sum();
        let parent_sse = total_sq - total_sum * total_sum / n as f64;
        let mut best: Option<(f64, usize, f64)> = None; // (sse, feature, threshold)
        let min_leaf = self.s.min_samples_leaf.max(1);
        for &f in &feats[..self.n_features] {
            idx.sort_unstable_by(|&a, &b| self.x[a][f].total_cmp(&self.x[b][f]));
            let (mut ls, mut lq) = (0.0, 0.0);
            for k in 0..n - 1 {
                let yi = self.y[idx[k]];
                ls += yi;
                lq += yi * yi;
                let nl = k + 1;
                let nr = n - nl;
                if nl < min_leaf || nr < min_leaf {
                    continue;
                }
                let (xa, xb) = (self.x[idx[k]][f], self.x[idx[k + 1]][f]);
                if xb <= xa {
                    continue;
                }
                let (rs, rq) = (total_sum - ls, total_sq - lq);
                let sse = (lq - ls * ls / nl as f64) + (rq - rs * rs / nr as f64);
                if best.is_none_or(|(b, _, _)| sse < b) {
                    best = Some((sse, f, 0.5 * (xa + xb)));
                }
            }
        }
        let Some((sse, feature, threshold)) = best else {
            return me;
        };
        if sse >= parent_sse - 1e-12 * parent_sse.abs() {
            return me;
        }
        let mut left: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| self.x[i][feature] <= threshold)
            .collect();
        let mut right: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| self.x[i][feature] > threshold)
            .collect();
        let l = self.build(&mut left, depth + 1, rng);
        let r = self.build(&mut right, depth + 1, rng);
        self.nodes[me] = Node::Split {
            feature,
            threshold,
            left: l,
            right: r,
        };
        me
    }
}

impl RandomForest {
    /// Fit to rows `x` (equal lengths, finite) and targets `y`. `None` when empty.
    pub fn fit(
        x: &[Vec<f64>],
        y: &[f64],
        settings: &ForestSettings,
        rng: &mut dyn RngCore,
    ) -> Option<Self> {
        if x.is_empty() || x.len() != y.len() || x[0].is_empty() {
            return None;
        }
        let n = x.len();
        let d = x[0].len();
        let n_features = ((d as f64 * settings.feature_ratio).ceil() as usize).clamp(1, d);
        let trees = (0..settings.n_trees.max(1))
            .map(|_| {
                let mut idx: Vec<usize> = if settings.bootstrap {
                    (0..n).map(|_| rng.random_range(0..n)).collect()
                } else {
                    (0..n).collect()
                };
                let mut b = Builder {
                    x,
                    y,
                    s: settings,
                    n_features,
                    nodes: Vec::new(),
                };
                b.build(&mut idx, 0, rng);
                Tree { nodes: b.nodes }
            })
            .collect();
        Some(RandomForest { trees })
    }

    /// Predictive mean and variance at `x` (variance floored at 1e-12).
    pub fn predict(&self, x: &[f64]) -> (f64, f64) {
        let k = self.trees.len() as f64;
        let (mut m, mut second) = (0.0, 0.0);
        for t in &self.trees {
            let (mu, var) = t.leaf(x);
            m += mu;
            second += var + mu * mu;
        }
        let mean = m / k;
        (mean, (second / k - mean * mean).max(1e-12))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn forest_fits_a_smooth_function() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let f = |x: &[f64]| (3.0 * x[0]).sin() + x[1] * x[1];
        let x: Vec<Vec<f64>> = (0..200)
            .map(|_| vec![rng.random(), rng.random(), rng.random()])
            .collect();
        let y: Vec<f64> = x.iter().map(|r| f(r)).collect();
        let rf = RandomForest::fit(&x, &y, &ForestSettings::default(), &mut rng).unwrap();
        let mut err = 0.0;
        let mut base = 0.0;
        let ymean = y.iter().sum::<f64>() / y.len() as f64;
        for _ in 0..200 {
            let q = vec![rng.random(), rng.random(), rng.random()];
            let (m, v) = rf.predict(&q);
            assert!(v > 0.0);
            err += (m - f(&q)).powi(2);
            base += (ymean - f(&q)).powi(2);
        }
        assert!(err < 0.15 * base, "forest MSE {err} vs constant {base}");
        // An empty training set gives no forest.
        assert!(RandomForest::fit(&[], &[], &ForestSettings::default(), &mut rng).is_none());
    }
}
