//! The WFG toolkit problems WFG1-9 (Huband et al. 2006) exactly as pymoo 0.6.2
//! computes them: position parameter `k` (4 for two objectives, `2 (M - 1)`
//! otherwise), distance parameter `l = n - k`, variables `x_i` in `[0, 2i]`,
//! shape scales `S_m = 2m`, every transformation's result corrected into
//! [0, 1] with pymoo's tolerance of 1e-10. pymoo's WFG9 skips the final
//! `_post` step, which is the identity for `A = 1` anyway; WFG3 uses
//! `A = (1, 0, ..., 0)`, which makes its front degenerate (a line).

use std::f64::consts::PI;

/// pymoo's `correct_to_01`: values within 1e-10 outside [0, 1] are snapped
/// onto the bound, others are left as they are.
fn correct01(v: f64) -> f64 {
    const EPS: f64 = 1e-10;
    if (-EPS..0.0).contains(&v) {
        0.0
    } else if v > 1.0 && v <= 1.0 + EPS {
        1.0
    } else {
        v
    }
}

fn shift_linear(y: f64, shift: f64) -> f64 {
    correct01((y - shift).abs() / ((shift - y).floor() + shift).abs())
}

fn shift_deceptive(y: f64, a: f64, b: f64, c: f64) -> f64 {
    let t1 = (y - a + b).floor() * (1.0 - c + (a - b) / b) / (a - b);
    let t2 = (a + b - y).floor() * (1.0 - c + (1.0 - a - b) / b) / (1.0 - a - b);
    correct01(1.0 + ((y - a).abs() - b) * (t1 + t2 + 1.0 / b))
}

fn shift_multi_modal(y: f64, a: f64, b: f64, c: f64) -> f64 {
    let t1 = (y - c).abs() / (2.0 * ((c - y).floor() + c));
    let t2 = (4.0 * a + 2.0) * PI * (0.5 - t1);
    correct01((1.0 + t2.cos() + 4.0 * b * t1.powi(2)) / (b + 2.0))
}

fn bias_flat(y: f64, a: f64, b: f64, c: f64) -> f64 {
    correct01(
        a + (y - b).floor().min(0.0) * (a * (b - y) / b)
            - (c - y).floor().min(0.0) * ((1.0 - a) * (y - c) / (1.0 - c)),
    )
}

fn bias_poly(y: f64, alpha: f64) -> f64 {
    correct01(y.powf(alpha))
}

/// Parameter-dependent bias with pymoo's defaults `A = 0.98 / 49.98`,
/// `B = 0.02`, `C = 50`.
fn param_dependent(y: f64, y_deg: f64) -> f64 {
    let (a, b, c) = (0.98 / 49.98, 0.02, 50.0);
    let aux = a - (1.0 - 2.0 * y_deg) * ((0.5 - y_deg).floor() + a).abs();
    correct01(y.powf(b + (c - b) * aux))
}

fn mean(y: &[f64]) -> f64 {
    correct01(y.iter().sum::<f64>() / y.len() as f64)
}

fn weighted_sum(y: &[f64], w: &[f64]) -> f64 {
    let dot: f64 = y.iter().zip(w).map(|(a, b)| a * b).sum();
    correct01(dot / w.iter().sum::<f64>())
}

fn non_separable(y: &[f64], a: usize) -> f64 {
    let m = y.len();
    let val = (a as f64 / 2.0).ceil();
    let mut num = 0.0;
    for j in 0..m {
        num += y[j];
        for k in 0..a.saturating_sub(1) {
            num += (y[j] - y[(1 + j + k) % m]).abs();
        }
    }
    let denom = m as f64 * val * (1.0 + 2.0 * a as f64 - 2.0 * val) / a as f64;
    correct01(num / denom)
}

/// Shape functions of pymoo: `m` is 1-based, `x` the `M - 1` position values.
fn shape_concave(x: &[f64], m: usize) -> f64 {
    let mm = x.len();
    let s = |v: f64| (0.5 * v * PI).sin();
    let r = if m == 1 {
        x.iter().map(|&v| s(v)).product()
    } else if m <= mm {
        x[..mm - m + 1].iter().map(|&v| s(v)).product::<f64>() * (0.5 * x[mm - m + 1] * PI).cos()
    } else {
        (0.5 * x[0] * PI).cos()
    };
    correct01(r)
}

fn shape_convex(x: &[f64], m: usize) -> f64 {
    let mm = x.len();
    let c = |v: f64| 1.0 - (0.5 * v * PI).cos();
    let r = if m == 1 {
        x.iter().map(|&v| c(v)).product()
    } else if m <= mm {
        x[..mm - m + 1].iter().map(|&v| c(v)).product::<f64>()
            * (1.0 - (0.5 * x[mm - m + 1] * PI).sin())
    } else {
        1.0 - (0.5 * x[0] * PI).sin()
    };
    correct01(r)
}

fn shape_linear(x: &[f64], m: usize) -> f64 {
    let mm = x.len();
    let r = if m == 1 {
        x.iter().product()
    } else if m <= mm {
        x[..mm - m + 1].iter().product::<f64>() * (1.0 - x[mm - m + 1])
    } else {
        1.0 - x[0]
    };
    correct01(r)
}

fn shape_mixed(x: f64) -> f64 {
    let (a, alpha) = (5.0, 1.0);
    let aux = 2.0 * a * PI;
    correct01((1.0 - x - (aux * x + 0.5 * PI).cos() / aux).powf(alpha))
}

fn shape_disconnected(x: f64) -> f64 {
    let (alpha, beta, a) = (1.0, 1.0, 5.0);
    let aux = (a * PI * x.powf(beta)).cos();
    correct01(1.0 - x.powf(alpha) * aux * aux)
}

/// The default position parameter `k` for `m` objectives (pymoo's rule).
pub(crate) fn default_k(m: usize) -> usize {
    if m == 2 {
        4
    } else {
        2 * (m - 1)
    }
}

/// Reduction of the position parameters into `M - 1` groups of `k / (M - 1)`
/// and of the distance parameters `y[k..]` into one, each by `reduce`.
fn grouped(y: &[f64], m: usize, k: usize, reduce: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let gap = k / (m - 1);
    let mut t: Vec<f64> = (0..m - 1)
        .map(|i| reduce(&y[i * gap..(i + 1) * gap]))
        .collect();
    t.push(reduce(&y[k..]));
    t
}

/// `_post` with degeneracy constants `a`, then `f_m = x_M + S_m h_m`.
fn finish(t: &[f64], a: &[f64], shape: impl Fn(&[f64], usize) -> f64) -> Vec<f64> {
    let m = t.len();
    let last = t[m - 1];
    let x: Vec<f64> = (0..m - 1)
        .map(|i| last.max(a[i]) * (t[i] - 0.5) + 0.5)
        .collect();
    (0..m)
        .map(|i| last + 2.0 * (i + 1) as f64 * shape(&x, i + 1))
        .collect()
}

/// Evaluate WFG`which` (1..=9) with `m` objectives and position parameter
/// `k` at `z` (each `z_i` in `[0, 2 (i + 1)]`).
pub(crate) fn evaluate(which: u8, z: &[f64], m: usize, k: usize) -> Vec<f64> {
    let n = z.len();
    let mut y: Vec<f64> = z
        .iter()
        .enumerate()
        .map(|(i, v)| v / (2.0 * (i + 1) as f64))
        .collect();
    let ones = vec![1.0; m - 1];
    let concave = |x: &[f64], i: usize| shape_concave(x, i);
    match which {
        1 => {
            for v in &mut y[k..] {
                *v = bias_flat(shift_linear(*v, 0.35), 0.8, 0.75, 0.85);
            }
            for v in &mut y {
                *v = bias_poly(*v, 0.02);
            }
            let w: Vec<f64> = (1..=n).map(|i| 2.0 * i as f64).collect();
            let gap = k / (m - 1);
            let mut t: Vec<f64> = (0..m - 1)
                .map(|i| weighted_sum(&y[i * gap..(i + 1) * gap], &w[i * gap..(i + 1) * gap]))
                .collect();
            t.push(weighted_sum(&y[k..], &w[k..]));
            finish(&t, &ones, |x, i| {
                if i < m {
                    shape_convex(x, i)
                } else {
                    shape_mixed(x[0])
                }
            })
        }
        2 | 3 => {
            for v in &mut y[k..] {
                *v = shift_linear(*v, 0.35);
            }
            let l = n - k;
            let mut r: Vec<f64> = y[..k].to_vec();
            for j in 0..l / 2 {
                r.push(non_separable(&y[k + 2 * j..k + 2 * j + 2], 2));
            }
            let t = grouped(&r, m, k, mean);
            if which == 2 {
                finish(&t, &ones, |x, i| {
                    if i < m {
                        shape_convex(x, i)
                    } else {
                        shape_disconnected(x[0])
                    }
                })
            } else {
                let mut a = vec![0.0; m - 1];
                a[0] = 1.0;
                finish(&t, &a, shape_linear)
            }
        }
        4 => {
            for v in &mut y {
                *v = shift_multi_modal(*v, 30.0, 10.0, 0.35);
            }
            finish(&grouped(&y, m, k, mean), &ones, concave)
        }
        5 => {
            for v in &mut y {
                *v = shift_deceptive(*v, 0.35, 0.001, 0.05);
            }
            finish(&grouped(&y, m, k, mean), &ones, concave)
        }
        6 => {
            for v in &mut y[k..] {
                *v = shift_linear(*v, 0.35);
            }
            let gap = k / (m - 1);
            let t = grouped(&y, m, k, |g| {
                non_separable(g, if g.len() == gap { gap } else { n - k })
            });
            finish(&t, &ones, concave)
        }
        7 => {
            let orig = y.clone();
            for i in 0..k {
                y[i] = param_dependent(orig[i], mean(&orig[i + 1..]));
            }
            for v in &mut y[k..] {
                *v = shift_linear(*v, 0.35);
            }
            finish(&grouped(&y, m, k, mean), &ones, concave)
        }
        8 => {
            let orig = y.clone();
            for i in k..n {
                y[i] = shift_linear(param_dependent(orig[i], mean(&orig[..i])), 0.35);
            }
            finish(&grouped(&y, m, k, mean), &ones, concave)
        }
        9 => {
            let orig = y.clone();
            for i in 0..n - 1 {
                y[i] = param_dependent(orig[i], mean(&orig[i + 1..]));
            }
            for (i, v) in y.iter_mut().enumerate() {
                *v = if i < k {
                    shift_deceptive(*v, 0.35, 0.001, 0.05)
                } else {
                    shift_multi_modal(*v, 30.0, 95.0, 0.35)
                };
            }
            let gap = k / (m - 1);
            let t = grouped(&y, m, k, |g| {
                non_separable(g, if g.len() == gap { gap } else { n - k })
            });
            finish(&t, &ones, concave)
        }
        _ => unreachable!("WFG{which} does not exist"),
    }
}

/// The objective vector on the true front at position values `x` (the `M - 1`
/// values after all transformations, each in [0, 1]) with distance `x_M = 0`.
pub(crate) fn front_point(which: u8, x: &[f64]) -> Vec<f64> {
    let m = x.len() + 1;
    let mut t = x.to_vec();
    t.push(0.0);
    let ones = vec![1.0; m - 1];
    match which {
        1 => finish(&t, &ones, |x, i| {
            if i < m {
                shape_convex(x, i)
            } else {
                shape_mixed(x[0])
            }
        }),
        2 => finish(&t, &ones, |x, i| {
            if i < m {
                shape_convex(x, i)
            } else {
                shape_disconnected(x[0])
            }
        }),
        3 => {
            let mut a = vec![0.0; m - 1];
            a[0] = 1.0;
            finish(&t, &a, shape_linear)
        }
        _ => finish(&t, &ones, shape_concave),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_separable_reduction_matches_hand_computation() {
        // A = 2 over (0.2, 0.6): num = 0.2 + |0.2-0.6| + 0.6 + |0.6-0.2| = 1.6,
        // denom = 2 * 1 * (1 + 4 - 2) / 2 = 3.
        assert!((non_separable(&[0.2, 0.6], 2) - 1.6 / 3.0).abs() < 1e-15);
        assert_eq!(correct01(1.0 + 5e-11), 1.0);
        assert_eq!(correct01(-5e-11), 0.0);
        assert_eq!(correct01(1.5), 1.5);
    }

    #[test]
    fn optimal_distance_parameters_give_front_points() {
        // WFG4 with x_i = 0.35 * 2i for the distance parameters lies on the
        // sphere scaled by S_m = 2m.
        let (m, k, n) = (3, 4, 10);
        let mut z: Vec<f64> = (0..n).map(|i| 0.35 * 2.0 * (i + 1) as f64).collect();
        z[0] = 0.3 * 2.0;
        z[1] = 0.9 * 4.0;
        let f = evaluate(4, &z, m, k);
        let r: f64 = f
            .iter()
            .enumerate()
            .map(|(i, v)| (v / (2.0 * (i + 1) as f64)).powi(2))
            .sum();
        assert!((r - 1.0).abs() < 1e-9, "{f:?}");
    }
}
