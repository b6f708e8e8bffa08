//! Gaussian-process regression for the model-based optimizers: a Matérn-5/2
//! kernel with one lengthscale per input (ARD) on the unit cube, standardised
//! outputs, a noise term with a floor, and hyperparameters fitted by
//! maximising the log marginal likelihood plus log-normal priors
//! (maximum a posteriori) with its analytic gradient.
//!
//! The priors are BoTorch's current defaults: lengthscales log-normal around
//! `sqrt(2) + ln(d) / 2` (Hvarfner et al. 2024, "Vanilla Bayesian
//! optimization performs great in high dimensions"), which keeps the model
//! sensible with fewer points than dimensions, and the noise variance
//! log-normal around `e^-4` of the output variance. A model can be conditioned
//! on extra points without refitting ([`Gp::condition`]: kriging believer,
//! pending trials).

use crate::lbfgs;

/// Standard deviation of the log-lengthscale prior.
const LENGTHSCALE_PRIOR_SD: f64 = 1.732_050_807_568_877_2;
/// Mean and standard deviation of the log noise-variance prior.
const NOISE_PRIOR: (f64, f64) = (-4.0, 1.0);
/// Mean and standard deviation of the log signal-variance prior (outputs are
/// standardised, so about 1).
const SIGNAL_PRIOR: (f64, f64) = (0.0, 1.0);
/// Box the log hyperparameters are kept in (protects the exponentials).
const LOG_BOUNDS: (f64, f64) = (-9.0, 9.0);

/// The kernel's hyperparameters, in log space.
#[derive(Clone, Debug, PartialEq)]
pub struct GpHyperparameters {
    /// `ln` of each input's lengthscale.
    pub log_lengthscales: Vec<f64>,
    /// `ln` of the signal variance (of the standardised outputs).
    pub log_signal: f64,
    /// `ln` of the noise variance above the floor (standardised outputs).
    pub log_noise: f64,
}

impl GpHyperparameters {
    /// `1 / lengthscale^2` per input, the form the kernel uses.
    pub fn inverse_squared_lengthscales(&self) -> Vec<f64> {
        self.log_lengthscales
            .iter()
            .map(|l| (-2.0 * l).exp())
            .collect()
    }

    /// The priors' medians for `d` inputs: the start of a first fit.
    pub fn prior_median(d: usize) -> Self {
        GpHyperparameters {
            log_lengthscales: vec![lengthscale_prior_mean(d); d],
            log_signal: SIGNAL_PRIOR.0,
            log_noise: NOISE_PRIOR.0,
        }
    }

    fn to_vec(&self) -> Vec<f64> {
        let mut v = self.log_lengthscales.clone();
        v.push(self.log_signal);
        v.push(self.log_noise);
        v
    }

    fn from_slice(v: &[f64]) -> Self {
        let d = v.len() - 2;
        GpHyperparameters {
            log_lengthscales: v[..d].to_vec(),
            log_signal: v[d],
            log_noise: v[d + 1],
        }
    }
}

fn lengthscale_prior_mean(d: usize) -> f64 {
    std::f64::consts::SQRT_2 + 0.5 * (d.max(1) as f64).ln()
}

/// How a [`Gp`] is fitted.
#[derive(Clone, Debug, PartialEq)]
pub struct GpFit {
    /// Noise variance floor (standardised outputs), added to the fitted noise.
    pub noise_floor: f64,
    /// Most L-BFGS iterations of the hyperparameter search.
    pub max_iterations: usize,
}

impl Default for GpFit {
    fn default() -> Self {
        GpFit {
            noise_floor: 1e-6,
            max_iterations: 100,
        }
    }
}

/// Matérn-5/2 correlation at scaled distance `r`.
fn matern52(r: f64) -> f64 {
    let s = 5f64.sqrt() * r;
    (1.0 + s + s * s / 3.0) * (-s).exp()
}

/// `-2 d matern52 / d(r^2)`, written without the `1 / r` so that it is finite at 0.
fn matern52_slope(r: f64) -> f64 {
    let s = 5f64.sqrt() * r;
    5.0 / 3.0 * (1.0 + s) * (-s).exp()
}

/// A fitted Gaussian process: data, hyperparameters and the Cholesky factor of
/// the kernel matrix.
#[derive(Clone, Debug)]
pub struct Gp {
    x: Vec<Vec<f64>>,
    /// Standardised outputs.
    z: Vec<f64>,
    y_mean: f64,
    y_sd: f64,
    hyper: GpHyperparameters,
    noise: f64,
    inv_ls2: Vec<f64>,
    /// Lower Cholesky factor, row-major, `n x n`.
    chol: Vec<f64>,
    /// `K^-1 z`.
    alpha: Vec<f64>,
}

/// Pairwise squared differences per input, the fixed part of the kernel
/// matrix and of its gradient during a fit (pairs `i < j`).
struct PairTable {
    d: usize,
    sq: Vec<f64>,
}

impl PairTable {
    fn new(x: &[Vec<f64>]) -> Self {
        let d = x.first().map_or(0, |v| v.len());
        let mut sq = Vec::with_capacity(x.len() * x.len().saturating_sub(1) / 2 * d);
        for i in 0..x.len() {
            for j in 0..i {
                sq.extend(x[i].iter().zip(&x[j]).map(|(a, b)| (a - b) * (a - b)));
            }
        }
        PairTable { d, sq }
    }

    fn pair(&self, i: usize, j: usize) -> &[f64] {
        let p = i * (i - 1) / 2 + j;
        &self.sq[p * self.d..(p + 1) * self.d]
    }
}

/// In-place Cholesky factorisation of a symmetric positive definite `n x n`
/// row-major matrix (lower triangle); `false` if it is not positive definite.
fn cholesky(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let row_j = &mut a[j * n..(j + 1) * n];
        let s = row_j[j] - row_j[..j].iter().map(|v| v * v).sum::<f64>();
        if s <= 0.0 || !s.is_finite() {
            return false;
        }
        let ljj = s.sqrt();
        row_j[j] = ljj;
        for v in row_j[j + 1..].iter_mut() {
            *v = 0.0;
        }
        for i in j + 1..n {
            let (top, bottom) = a.split_at_mut(i * n);
            let row_j = &top[j * n..j * n + j];
            let row_i = &mut bottom[..n];
            let dot: f64 = row_i[..j].iter().zip(row_j).map(|(a, b)| a * b).sum();
            row_i[j] = (row_i[j] - dot) / ljj;
        }
    }
    true
}

/// Solve `L v = b` in place (forward substitution).
fn forward(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let dot: f64 = l[i * n..i * n + i]
            .iter()
            .zip(&b[..i])
            .map(|(a, v)| a * v)
            .sum();
        b[i] = (b[i] - dot) / l[i * n + i];
    }
}

/// Solve `L^T v = b` in place (back substitution).
fn backward(l: &[f64], n: usize, b: &mut [f64]) {
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= l[k * n + i] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
}

/// Kernel matrix of the data under `h` (signal part; noise on the diagonal).
fn kernel_matrix(pairs: &PairTable, n: usize, h: &GpHyperparameters, noise: f64) -> Vec<f64> {
    let inv: Vec<f64> = h.inverse_squared_lengthscales();
    let s2 = h.log_signal.exp();
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        k[i * n + i] = s2 + noise;
        for j in 0..i {
            let r2: f64 = pairs.pair(i, j).iter().zip(&inv).map(|(a, b)| a * b).sum();
            let v = s2 * matern52(r2.sqrt());
            k[i * n + j] = v;
            k[j * n + i] = v;
        }
    }
    k
}

/// Negative log marginal likelihood minus log prior, and its gradient in the
/// log hyperparameters; `None` when the kernel matrix is not positive definite.
fn objective(pairs: &PairTable, z: &[f64], theta: &[f64], floor: f64) -> Option<(f64, Vec<f64>)> {
    let n = z.len();
    let d = pairs.d;
    let h = GpHyperparameters::from_slice(theta);
    let noise = floor + h.log_noise.exp();
    let mut l = kernel_matrix(pairs, n, &h, noise);
    if !cholesky(&mut l, n) {
        return None;
    }
    let mut alpha = z.to_vec();
    forward(&l, n, &mut alpha);
    let quad: f64 = alpha.iter().map(|v| v * v).sum();
    backward(&l, n, &mut alpha);
    let logdet: f64 = (0..n).map(|i| l[i * n + i].ln()).sum();
    let mut value = 0.5 * quad + logdet + 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    // K^-1 = L^-T L^-1: invert L column by column.
    let mut linv = vec![0.0; n * n];
    for c in 0..n {
        let mut e = vec![0.0; n];
        e[c] = 1.0;
        forward(&l, n, &mut e);
        for r in c..n {
            linv[r * n + c] = e[r];
        }
    }
    // W = K^-1 - alpha alpha^T (symmetric); the gradient of the NLL in a
    // hyperparameter t is 0.5 tr(W dK/dt).
    let mut w = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = 0.0;
            for k in i..n {
                s += linv[k * n + i] * linv[k * n + j];
            }
            let v = s - alpha[i] * alpha[j];
            w[i * n + j] = v;
            w[j * n + i] = v;
        }
    }
    let inv: Vec<f64> = h.inverse_squared_lengthscales();
    let s2 = h.log_signal.exp();
    let mut grad = vec![0.0; d + 2];
    let mut signal_grad = 0.0;
    let mut trace_w = 0.0;
    for i in 0..n {
        trace_w += w[i * n + i];
        signal_grad += 0.5 * w[i * n + i] * s2;
        for j in 0..i {
            let sq = pairs.pair(i, j);
            let r2: f64 = sq.iter().zip(&inv).map(|(a, b)| a * b).sum();
            let r = r2.sqrt();
            let wij = w[i * n + j];
            signal_grad += wij * s2 * matern52(r);
            // dK/d ln l_k = s2 * slope * sq_k * inv_k (the factor 2 of the
            // symmetric pair cancels the 0.5).
            let c = wij * s2 * matern52_slope(r);
            for k in 0..d {
                grad[k] += c * sq[k] * inv[k];
            }
        }
    }
    grad[d] = signal_grad;
    grad[d + 1] = 0.5 * trace_w * h.log_noise.exp();
    // Priors (normal in log space).
    let mu = lengthscale_prior_mean(d);
    let s2l = LENGTHSCALE_PRIOR_SD * LENGTHSCALE_PRIOR_SD;
    for k in 0..d {
        let t = theta[k] - mu;
        value += 0.5 * t * t / s2l;
        grad[k] += t / s2l;
    }
    for (idx, (m, s)) in [(d, SIGNAL_PRIOR), (d + 1, NOISE_PRIOR)] {
        let t = theta[idx] - m;
        value += 0.5 * t * t / (s * s);
        grad[idx] += t / (s * s);
    }
    Some((value, grad))
}

/// Outputs shifted to mean 0 and scaled to variance 1 (scale 1 if constant),
/// with the mean and scale.
fn standardise(y: &[f64]) -> (Vec<f64>, f64, f64) {
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let sd = if var > 1e-300 { var.sqrt() } else { 1.0 };
    (y.iter().map(|v| (v - mean) / sd).collect(), mean, sd)
}

impl Gp {
    /// Fit a GP to inputs `x` (points in or near the unit cube, all of one
    /// length) and outputs `y`, starting the hyperparameter search at `start`
    /// (a previous fit's, or the priors' medians when `None`). `None` when
    /// `x` is empty or the data are degenerate beyond repair.
    pub fn fit(
        x: Vec<Vec<f64>>,
        y: &[f64],
        start: Option<&GpHyperparameters>,
        settings: &GpFit,
    ) -> Option<Gp> {
        let n = x.len();
        if n == 0 || n != y.len() {
            return None;
        }
        let d = x[0].len();
        let (z, y_mean, y_sd) = standardise(y);
        let pairs = PairTable::new(&x);
        let prior = GpHyperparameters::prior_median(d);
        let start = match start {
            Some(h) if h.log_lengthscales.len() == d => h.clone(),
            _ => prior.clone(),
        };
        let floor = settings.noise_floor;
        let f = |t: &[f64]| objective(&pairs, &z, t, floor);
        let theta = lbfgs::minimise(f, start.to_vec(), LOG_BOUNDS, settings.max_iterations)
            .or_else(|| lbfgs::minimise(f, prior.to_vec(), LOG_BOUNDS, settings.max_iterations))
            .unwrap_or_else(|| prior.to_vec());
        Gp::with_hyperparameters(
            x,
            z,
            y_mean,
            y_sd,
            GpHyperparameters::from_slice(&theta),
            floor,
        )
    }

    /// A GP with the given hyperparameters, not refitted (between refits of
    /// a growing data set); `None` when `x` is empty or lengths disagree.
    pub fn with_fixed_hyperparameters(
        x: Vec<Vec<f64>>,
        y: &[f64],
        hyper: &GpHyperparameters,
        noise_floor: f64,
    ) -> Option<Gp> {
        let n = x.len();
        if n == 0 || n != y.len() || hyper.log_lengthscales.len() != x[0].len() {
            return None;
        }
        let (z, y_mean, y_sd) = standardise(y);
        Gp::with_hyperparameters(x, z, y_mean, y_sd, hyper.clone(), noise_floor)
    }

    /// A GP with fixed hyperparameters (standardised outputs `z`); raises the
    /// noise until the kernel matrix factors.
    fn with_hyperparameters(
        x: Vec<Vec<f64>>,
        z: Vec<f64>,
        y_mean: f64,
        y_sd: f64,
        hyper: GpHyperparameters,
        floor: f64,
    ) -> Option<Gp> {
        let n = x.len();
        let pairs = PairTable::new(&x);
        let mut noise = floor + hyper.log_noise.exp();
        for _ in 0..8 {
            let mut l = kernel_matrix(&pairs, n, &hyper, noise);
            if cholesky(&mut l, n) {
                let inv_ls2 = hyper.inverse_squared_lengthscales();
                let mut gp = Gp {
                    x,
                    z,
                    y_mean,
                    y_sd,
                    hyper,
                    noise,
                    inv_ls2,
                    chol: l,
                    alpha: Vec::new(),
                };
                gp.solve_alpha();
                return Some(gp);
            }
            noise = (noise * 10.0).max(1e-8);
        }
        None
    }

    fn solve_alpha(&mut self) {
        let n = self.x.len();
        let mut a = self.z.clone();
        forward(&self.chol, n, &mut a);
        backward(&self.chol, n, &mut a);
        self.alpha = a;
    }

    /// The fitted hyperparameters (the warm start of the next fit).
    pub fn hyperparameters(&self) -> &GpHyperparameters {
        &self.hyper
    }

    /// Number of data points (conditioned ones included).
    pub fn len(&self) -> usize {
        self.x.len()
    }

    /// Whether the model has no data (never true of a fitted one).
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// Signal covariance of the standardised outputs at `a` and `b`.
    fn cov(&self, a: &[f64], b: &[f64]) -> f64 {
        let r2: f64 = a
            .iter()
            .zip(b)
            .zip(&self.inv_ls2)
            .map(|((p, q), s)| (p - q) * (p - q) * s)
            .sum();
        self.hyper.log_signal.exp() * matern52(r2.sqrt())
    }

    /// Posterior mean and variance of the latent function at `x` (output
    /// units; the variance excludes the observation noise).
    pub fn predict(&self, x: &[f64]) -> (f64, f64) {
        let n = self.x.len();
        let mut v: Vec<f64> = self.x.iter().map(|xi| self.cov(x, xi)).collect();
        let mean: f64 = v.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        forward(&self.chol, n, &mut v);
        let explained: f64 = v.iter().map(|t| t * t).sum();
        let var = (self.hyper.log_signal.exp() - explained).max(1e-12);
        (self.y_mean + self.y_sd * mean, self.y_sd * self.y_sd * var)
    }

    /// Leave-one-out predictions at the data points, in output units:
    /// `(mean, variance)` of each point's observation predicted from all the
    /// others with the same hyperparameters. Closed form from the Cholesky
    /// factor (`mean_i = y_i - alpha_i / [K^-1]_ii`, `variance_i = 1 /
    /// [K^-1]_ii`, the variance including the noise), O(n^3 / 3); a cheap check
    /// of whether the model predicts.
    pub fn leave_one_out(&self) -> Vec<(f64, f64)> {
        let n = self.x.len();
        // diag(K^-1) = column sums of squares of L^-1: solve L w = e_i.
        let mut inv_diag = vec![0.0; n];
        let mut w = vec![0.0; n];
        for i in 0..n {
            w.iter_mut().for_each(|v| *v = 0.0);
            w[i] = 1.0;
            for r in i..n {
                let dot: f64 = self.chol[r * n + i..r * n + r]
                    .iter()
                    .zip(&w[i..r])
                    .map(|(a, v)| a * v)
                    .sum();
                w[r] = (w[r] - dot) / self.chol[r * n + r];
            }
            inv_diag[i] = w[i..].iter().map(|v| v * v).sum();
        }
        (0..n)
            .map(|i| {
                let mean = self.z[i] - self.alpha[i] / inv_diag[i];
                let var = 1.0 / inv_diag[i];
                (self.y_mean + self.y_sd * mean, self.y_sd * self.y_sd * var)
            })
            .collect()
    }

    /// Add an observation without refitting the hyperparameters (a rank-one
    /// extension of the Cholesky factor, O(n^2)); kriging believer adds a
    /// pending point at its predicted mean. Returns `false` (and leaves the
    /// model as it was) when the point is numerically a duplicate.
    pub fn condition(&mut self, x: Vec<f64>, y: f64) -> bool {
        let n = self.x.len();
        let mut row: Vec<f64> = self.x.iter().map(|xi| self.cov(&x, xi)).collect();
        forward(&self.chol, n, &mut row);
        let diag =
            self.hyper.log_signal.exp() + self.noise - row.iter().map(|t| t * t).sum::<f64>();
        if diag <= 1e-12 || !diag.is_finite() {
            return false;
        }
        let m = n + 1;
        let mut l = vec![0.0; m * m];
        for i in 0..n {
            l[i * m..i * m + i + 1].copy_from_slice(&self.chol[i * n..i * n + i + 1]);
        }
        l[n * m..n * m + n].copy_from_slice(&row);
        l[n * m + n] = diag.sqrt();
        self.chol = l;
        self.x.push(x);
        self.z.push((y - self.y_mean) / self.y_sd);
        self.solve_alpha();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn data(n: usize, d: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..d).map(|_| rng.random::<f64>()).collect())
            .collect();
        let y = x
            .iter()
            .map(|v| (3.0 * v[0]).sin() + v[1] * v[1] + 0.1 * v.iter().sum::<f64>())
            .collect();
        (x, y)
    }

    #[test]
    fn likelihood_gradient_matches_finite_differences() {
        let (x, y) = data(15, 3, 1);
        let pairs = PairTable::new(&x);
        let mean = y.iter().sum::<f64>() / 15.0;
        let z: Vec<f64> = y.iter().map(|v| v - mean).collect();
        let theta = vec![-0.7, 0.3, 0.9, 0.2, -3.0];
        let (_, grad) = objective(&pairs, &z, &theta, 1e-6).unwrap();
        for k in 0..theta.len() {
            let h = 1e-5;
            let mut up = theta.clone();
            up[k] += h;
            let mut down = theta.clone();
            down[k] -= h;
            let fd = (objective(&pairs, &z, &up, 1e-6).unwrap().0
                - objective(&pairs, &z, &down, 1e-6).unwrap().0)
                / (2.0 * h);
            assert!(
                (fd - grad[k]).abs() < 1e-5 * (1.0 + fd.abs()),
                "coordinate {k}: analytic {} finite differences {fd}",
                grad[k]
            );
        }
    }

    #[test]
    fn posterior_interpolates_noise_free_data_and_is_uncertain_far_away() {
        let (x, y) = data(30, 2, 2);
        let gp = Gp::fit(x.clone(), &y, None, &GpFit::default()).unwrap();
        let sd_y = {
            let m = y.iter().sum::<f64>() / 30.0;
            (y.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 30.0).sqrt()
        };
        for (xi, yi) in x.iter().zip(&y) {
            let (m, v) = gp.predict(xi);
            assert!((m - yi).abs() < 0.05 * sd_y, "{m} vs {yi}");
            assert!(v.sqrt() < 0.1 * sd_y);
        }
        // Between the points it predicts the smooth function well.
        let (m, _) = gp.predict(&[0.5, 0.5]);
        let truth = (1.5f64).sin() + 0.25 + 0.1;
        assert!((m - truth).abs() < 0.1, "{m} vs {truth}");
        // Far outside the data the variance returns towards the prior's.
        let (_, v_far) = gp.predict(&[8.0, -8.0]);
        let (_, v_near) = gp.predict(&x[0]);
        assert!(v_far > 100.0 * v_near);
    }

    #[test]
    fn leave_one_out_equals_refitting_without_the_point() {
        let (x, y) = data(14, 2, 4);
        let gp = Gp::fit(x.clone(), &y, None, &GpFit::default()).unwrap();
        let loo = gp.leave_one_out();
        for i in [0, 5, 13] {
            let mut xs = x.clone();
            let xi = xs.remove(i);
            let z: Vec<f64> = (0..14)
                .filter(|&j| j != i)
                .map(|j| (y[j] - gp.y_mean) / gp.y_sd)
                .collect();
            let without =
                Gp::with_hyperparameters(xs, z, gp.y_mean, gp.y_sd, gp.hyper.clone(), 1e-6)
                    .unwrap();
            let (m, v) = without.predict(&xi);
            let v = v + gp.y_sd * gp.y_sd * gp.noise;
            assert!((m - loo[i].0).abs() < 1e-6, "{m} vs {}", loo[i].0);
            assert!(
                (v - loo[i].1).abs() < 1e-6 * (1.0 + v),
                "{v} vs {}",
                loo[i].1
            );
        }
    }

    #[test]
    fn conditioning_equals_refitting_with_the_same_hyperparameters() {
        let (x, y) = data(12, 2, 3);
        let gp = Gp::fit(x[..11].to_vec(), &y[..11], None, &GpFit::default()).unwrap();
        let mut extended = gp.clone();
        assert!(extended.condition(x[11].clone(), y[11]));
        let z: Vec<f64> = y.iter().map(|v| (v - gp.y_mean) / gp.y_sd).collect();
        let direct =
            Gp::with_hyperparameters(x.clone(), z, gp.y_mean, gp.y_sd, gp.hyper.clone(), 1e-6)
                .unwrap();
        for p in [[0.1, 0.2], [0.7, 0.4], [0.5, 0.9]] {
            let (a, va) = extended.predict(&p);
            let (b, vb) = direct.predict(&p);
            assert!((a - b).abs() < 1e-8 && (va - vb).abs() < 1e-8);
        }
        // The exact same point again is refused, not a broken factor.
        let mut again = extended.clone();
        let _ = again.condition(x[11].clone(), y[11]);
        assert!(again.predict(&[0.3, 0.3]).0.is_finite());
    }
}
