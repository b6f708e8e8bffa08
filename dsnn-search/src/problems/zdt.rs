//! ZDT1-6 (Zitzler, Deb and Thiele 2000) as pymoo 0.6.2 computes them.

use std::f64::consts::PI;

/// Smallest f1 reachable on ZDT6 (pymoo's constant).
pub(crate) const ZDT6_F1_MIN: f64 = 0.280_775_319_1;
/// Largest f1 on ZDT3's front.
pub(crate) const ZDT3_F1_MAX: f64 = 0.851_832_865_4;

/// ZDT1-4 and ZDT6 (`which` = 1, 2, 3, 4, 6) at `x`.
pub(crate) fn evaluate(which: u8, x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let tail = &x[1..];
    match which {
        1..=3 => {
            let f1 = x[0];
            let g = 1.0 + 9.0 / (n - 1) as f64 * tail.iter().sum::<f64>();
            let h = match which {
                1 => 1.0 - (f1 / g).sqrt(),
                2 => 1.0 - (f1 / g).powi(2),
                _ => 1.0 - (f1 / g).sqrt() - (f1 / g) * (10.0 * PI * f1).sin(),
            };
            vec![f1, g * h]
        }
        4 => {
            let f1 = x[0];
            let g = 1.0
                + 10.0 * (n - 1) as f64
                + tail
                    .iter()
                    .map(|v| v * v - 10.0 * (4.0 * PI * v).cos())
                    .sum::<f64>();
            vec![f1, g * (1.0 - (f1 / g).sqrt())]
        }
        5 => zdt5(x),
        6 => {
            let f1 = 1.0 - (-4.0 * x[0]).exp() * (6.0 * PI * x[0]).sin().powi(6);
            let g = 1.0 + 9.0 * (tail.iter().sum::<f64>() / (n - 1) as f64).powf(0.25);
            vec![f1, g * (1.0 - (f1 / g).powi(2))]
        }
        _ => unreachable!("ZDT{which} does not exist"),
    }
}

/// Number of 5-bit groups after the first 30 bits of ZDT5 with `n` variables.
pub(crate) fn zdt5_groups(n: usize) -> usize {
    (n - 30) / 5
}

/// ZDT5 on bits (pymoo's normalised form): `u_0` = ones among the first 30
/// bits, `u_i` = ones in the i-th group of 5; `f1 = 1 + u_0`, `f2 = g / f1`
/// with `g = sum v(u_i)`, `v(u) = 2 + u` for `u < 5` and 1 for `u = 5`; then
/// `f1` scaled from [1, 31] and `f2` from [G / 31, G] (G groups) to [0, 1].
/// pymoo sums the values as floats, so non-binary inputs give its numbers too.
fn zdt5(x: &[f64]) -> Vec<f64> {
    let groups = zdt5_groups(x.len());
    let u0: f64 = x[..30].iter().sum();
    let g: f64 = (0..groups)
        .map(|i| {
            let u: f64 = x[30 + 5 * i..35 + 5 * i].iter().sum();
            (2.0 + u) * f64::from(u8::from(u < 5.0)) + f64::from(u8::from(u == 5.0))
        })
        .sum();
    let f1 = 1.0 + u0;
    let f2 = g / f1;
    let gm = groups as f64;
    vec![(f1 - 1.0) / 30.0, (f2 - gm / 31.0) / (gm - gm / 31.0)]
}

/// The 31 points of ZDT5's (discrete) front: `u_0 = 0..=30`, every group all ones.
pub(crate) fn zdt5_front(n: usize) -> Vec<Vec<f64>> {
    let gm = zdt5_groups(n) as f64;
    (0..=30)
        .map(|u0| {
            let f1 = 1.0 + u0 as f64;
            vec![(f1 - 1.0) / 30.0, (gm / f1 - gm / 31.0) / (gm - gm / 31.0)]
        })
        .collect()
}
