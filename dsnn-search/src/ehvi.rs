//! Expected hypervolume improvement (EHVI) of a point whose objectives are
//! independent Gaussians, exact for any number of objectives through a
//! decomposition of the region the current front does not dominate into
//! disjoint boxes.
//!
//! The improvement of a point `y` is the volume of the non-dominated region
//! (below the reference point) that `y` dominates: over the boxes `[l, u]`,
//! `sum prod_k (u_k - max(y_k, l_k))_+`. With independent objectives each
//! factor's expectation has a closed form, `psi(u_k) - psi(l_k)` with
//! `psi(b) = E[(b - y_k)_+]`, so the expectation of the sum is exact.
//! The boxes are columns: a grid over the first `M - 1` objectives (the
//! front's coordinates) and, per grid cell, the last objective from minus
//! infinity up to the lowest front point that dominates the cell's lower
//! corner: `(n + 1)^(M - 1)` boxes for a front of `n` points.

use crate::parego::normal_cdf;

/// The non-dominated region of a front below a reference point, as boxes.
#[derive(Clone, Debug)]
pub struct BoxDecomposition {
    /// Per objective, the grid's values: minus infinity, the front's
    /// coordinates (sorted), the reference point's.
    grid: Vec<Vec<f64>>,
    /// Per box and objective, the indices of its lower and upper bound in `grid`.
    boxes: Vec<Vec<(usize, usize)>>,
}

impl BoxDecomposition {
    /// Decompose the region below `reference` that no point of `front`
    /// dominates (points of `front` that do not lie strictly below the
    /// reference in every objective are ignored; dominated ones are harmless).
    pub fn new<P: AsRef<[f64]>>(front: &[P], reference: &[f64]) -> Self {
        Self::bounded(front, reference, None)
    }

    /// As [`BoxDecomposition::new`], with the region also bounded below by
    /// `lower` (improvements below it in an objective do not count) when given.
    pub fn bounded<P: AsRef<[f64]>>(front: &[P], reference: &[f64], lower: Option<&[f64]>) -> Self {
        let m = reference.len();
        let pts: Vec<&[f64]> = front
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.iter().zip(reference).all(|(a, r)| a < r))
            .collect();
        let grid: Vec<Vec<f64>> = (0..m)
            .map(|k| {
                let mut g: Vec<f64> = pts.iter().map(|p| p[k]).collect();
                g.sort_by(f64::total_cmp);
                g.dedup();
                let floor = lower.map_or(f64::NEG_INFINITY, |l| l[k]);
                g.retain(|&v| v > floor);
                g.insert(0, floor);
                g.push(reference[k]);
                g
            })
            .collect();
        let last = m - 1;
        let cells: Vec<usize> = grid[..last].iter().map(|g| g.len() - 1).collect();
        let n_columns: usize = cells.iter().product();
        let mut boxes = Vec::with_capacity(n_columns);
        let mut idx = vec![0usize; last];
        for _ in 0..n_columns {
            // The lowest last coordinate among the points that dominate the
            // cell's lower corner in the first M - 1 objectives.
            let top = pts
                .iter()
                .filter(|p| (0..last).all(|k| p[k] <= grid[k][idx[k]]))
                .map(|p| p[last])
                .fold(reference[last], f64::min);
            if top > grid[last][0] {
                let hi = grid[last]
                    .iter()
                    .position(|&v| v == top)
                    .expect("the top is a grid value");
                if hi > 0 {
                    let mut b: Vec<(usize, usize)> = idx.iter().map(|&i| (i, i + 1)).collect();
                    b.push((0, hi));
                    boxes.push(b);
                }
            }
            // Next cell (odometer).
            for k in 0..last {
                idx[k] += 1;
                if idx[k] < cells[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        BoxDecomposition { grid, boxes }
    }

    /// Number of boxes.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Whether there are no boxes (never: the region below the reference is
    /// never empty).
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }

    /// The hypervolume improvement of a point `y` (exact).
    pub fn improvement(&self, y: &[f64]) -> f64 {
        self.boxes
            .iter()
            .map(|b| {
                b.iter()
                    .enumerate()
                    .map(|(k, &(lo, hi))| (self.grid[k][hi] - y[k].max(self.grid[k][lo])).max(0.0))
                    .product::<f64>()
            })
            .sum()
    }

    /// The expected hypervolume improvement of a point whose objective `k` is
    /// Gaussian with mean `mean[k]` and standard deviation `sd[k]`,
    /// independently.
    pub fn expected_improvement(&self, mean: &[f64], sd: &[f64]) -> f64 {
        let psi: Vec<Vec<f64>> = self
            .grid
            .iter()
            .enumerate()
            .map(|(k, g)| g.iter().map(|&b| shortfall(b, mean[k], sd[k])).collect())
            .collect();
        self.boxes
            .iter()
            .map(|b| {
                b.iter()
                    .enumerate()
                    .map(|(k, &(lo, hi))| (psi[k][hi] - psi[k][lo]).max(0.0))
                    .product::<f64>()
            })
            .sum()
    }
}

/// `E[(b - y)_+]` for `y ~ N(mean, sd^2)`; 0 at `b = -inf`.
fn shortfall(b: f64, mean: f64, sd: f64) -> f64 {
    if b == f64::NEG_INFINITY {
        return 0.0;
    }
    if sd < 1e-12 {
        return (b - mean).max(0.0);
    }
    let z = (b - mean) / sd;
    let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    ((b - mean) * normal_cdf(z) + sd * pdf).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pareto::hypervolume;
    use rand::SeedableRng;

    #[test]
    fn improvement_matches_hypervolume_differences() {
        let front = vec![
            vec![0.1, 0.8, 0.5],
            vec![0.4, 0.3, 0.6],
            vec![0.7, 0.2, 0.2],
            vec![0.3, 0.5, 0.4],
        ];
        let r = [1.1, 1.1, 1.1];
        let bd = BoxDecomposition::new(&front, &r);
        let base = hypervolume(&front, &r);
        for y in [
            [0.2, 0.2, 0.2],
            [0.5, 0.5, 0.1],
            [0.9, 0.9, 0.9],
            [0.0, 1.0, 0.0],
        ] {
            let mut with = front.clone();
            with.push(y.to_vec());
            let want = hypervolume(&with, &r) - base;
            assert!((bd.improvement(&y) - want).abs() < 1e-12, "{y:?}");
        }
        // Two objectives.
        let front2 = vec![vec![0.2, 0.7], vec![0.5, 0.4], vec![0.8, 0.1]];
        let bd2 = BoxDecomposition::new(&front2, &[1.0, 1.0]);
        assert_eq!(bd2.len(), 4);
        let mut with = front2.clone();
        with.push(vec![0.3, 0.3]);
        let want = hypervolume(&with, &[1.0, 1.0]) - hypervolume(&front2, &[1.0, 1.0]);
        assert!((bd2.improvement(&[0.3, 0.3]) - want).abs() < 1e-12);
    }

    #[test]
    fn expected_improvement_matches_monte_carlo() {
        let front = vec![
            vec![0.1, 0.8, 0.5],
            vec![0.4, 0.3, 0.6],
            vec![0.7, 0.2, 0.2],
        ];
        let r = [1.1, 1.1, 1.1];
        let bd = BoxDecomposition::new(&front, &r);
        let base = hypervolume(&front, &r);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (mean, sd) in [
            ([0.3, 0.4, 0.4], [0.1, 0.2, 0.15]),
            ([0.8, 0.9, 0.7], [0.3, 0.3, 0.3]),
            ([1.5, 0.1, 0.1], [0.4, 0.05, 0.05]),
        ] {
            let n = 40_000;
            let mut mc = 0.0;
            for _ in 0..n {
                let y: Vec<f64> = (0..3)
                    .map(|k| mean[k] + sd[k] * crate::space::standard_normal(&mut rng))
                    .collect();
                let mut with = front.clone();
                with.push(y);
                mc += (hypervolume(&with, &r) - base) / n as f64;
            }
            let exact = bd.expected_improvement(&mean, &sd);
            assert!(
                (exact - mc).abs() < 0.02 * mc.max(1e-3) + 2e-4,
                "exact {exact} vs Monte Carlo {mc}"
            );
        }
        // A certain point: the improvement itself.
        let y = [0.2, 0.2, 0.2];
        assert!((bd.expected_improvement(&y, &[0.0; 3]) - bd.improvement(&y)).abs() < 1e-12);
    }
}
