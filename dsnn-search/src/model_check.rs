//! Checks of whether a surrogate model predicts, for optimizers that choose
//! between a model's proposals and model-free ones: rank correlation of a
//! Gaussian process's leave-one-out predictions with the observations.

use crate::gp::Gp;

/// Ranks of `v` (0-based, ties get the mean of their ranks).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0;
        for &k in &order[i..=j] {
            out[k] = mean;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rank correlation of `a` and `b` (same length); 0 when either
/// is constant or there are fewer than 3 values.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 3 {
        return 0.0;
    }
    let (ra, rb) = (ranks(&a[..n]), ranks(&b[..n]));
    let mean = (n as f64 - 1.0) / 2.0;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - mean) * (y - mean);
        saa += (x - mean) * (x - mean);
        sbb += (y - mean) * (y - mean);
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return 0.0;
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman correlation of `gp`'s leave-one-out means with its observations
/// `y` (the values it was fitted to, in order) over the last `recent` points
/// (all if 0 or more than there are): near 1 when the model ranks unseen
/// points as they are, near 0 when it does not predict. The recent points
/// are where a search is now, so their correlation says whether the model
/// ranks the candidates that matter; over all points the easy trend from
/// the first random ones to the front dominates.
pub fn loo_rank_correlation(gp: &Gp, y: &[f64], recent: usize) -> f64 {
    let loo: Vec<f64> = gp.leave_one_out().into_iter().map(|(m, _)| m).collect();
    let n = loo.len().min(y.len());
    let from = if recent == 0 || recent >= n {
        0
    } else {
        n - recent
    };
    spearman(&loo[from..n], &y[from..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gp::GpFit;
    use rand::{Rng, SeedableRng};

    #[test]
    fn spearman_of_monotone_reversed_and_tied_data() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((spearman(&a, &[2.0, 4.0, 8.0, 16.0, 32.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(spearman(&a, &[1.0; 5]), 0.0);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![2.5, 0.0, 2.5, 1.0]);
        // Scipy: spearmanr([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) = 0.8.
        assert!((spearman(&a, &[2.0, 1.0, 4.0, 3.0, 5.0]) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn smooth_functions_are_predicted_and_noise_is_not() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let x: Vec<Vec<f64>> = (0..40)
            .map(|_| (0..3).map(|_| rng.random::<f64>()).collect())
            .collect();
        let smooth: Vec<f64> = x.iter().map(|v| v[0] * v[0] + (2.0 * v[1]).sin()).collect();
        let noise: Vec<f64> = (0..40).map(|_| rng.random::<f64>()).collect();
        let fit = GpFit::default();
        let good = Gp::fit(x.clone(), &smooth, None, &fit).unwrap();
        let bad = Gp::fit(x, &noise, None, &fit).unwrap();
        let (cg, cb) = (
            loo_rank_correlation(&good, &smooth, 0),
            loo_rank_correlation(&bad, &noise, 0),
        );
        assert!(cg > 0.95, "smooth: {cg}");
        assert!(cb < 0.4, "noise: {cb}");
    }
}
