//! DTLZ1-7 (Deb, Thiele, Laumanns and Zitzler 2005) as pymoo 0.6.2 computes
//! them: DTLZ4 with `alpha = 100`; DTLZ5 and DTLZ6 map the position variables
//! after the first through `theta = (1 + 2 g x) / (2 (1 + g))`.

use std::f64::consts::PI;

/// pymoo's `obj_func`: `f_i = (1 + g) prod cos(theta^alpha pi/2) [sin(...)]`.
fn spherical(theta: &[f64], g: f64, alpha: i32) -> Vec<f64> {
    let m = theta.len() + 1;
    let a = |v: f64| if alpha == 1 { v } else { v.powi(alpha) } * PI / 2.0;
    (0..m)
        .map(|i| {
            let mut f = 1.0 + g;
            for &t in &theta[..m - 1 - i] {
                f *= a(t).cos();
            }
            if i > 0 {
                f *= a(theta[m - 1 - i]).sin();
            }
            f
        })
        .collect()
}

/// DTLZ`which` (1..=7) with `m` objectives at `x`.
pub(crate) fn evaluate(which: u8, x: &[f64], m: usize) -> Vec<f64> {
    let (pos, dist) = x.split_at(m - 1);
    let k = dist.len() as f64;
    let g1 = || {
        100.0
            * (k + dist
                .iter()
                .map(|v| (v - 0.5).powi(2) - (20.0 * PI * (v - 0.5)).cos())
                .sum::<f64>())
    };
    let g2 = || dist.iter().map(|v| (v - 0.5).powi(2)).sum::<f64>();
    let theta = |g: f64| -> Vec<f64> {
        pos.iter()
            .enumerate()
            .map(|(i, &v)| {
                if i == 0 {
                    v
                } else {
                    1.0 / (2.0 * (1.0 + g)) * (1.0 + 2.0 * g * v)
                }
            })
            .collect()
    };
    match which {
        1 => {
            let g = g1();
            (0..m)
                .map(|i| {
                    let mut f = 0.5 * (1.0 + g);
                    for &v in &pos[..m - 1 - i] {
                        f *= v;
                    }
                    if i > 0 {
                        f *= 1.0 - pos[m - 1 - i];
                    }
                    f
                })
                .collect()
        }
        2 => spherical(pos, g2(), 1),
        3 => spherical(pos, g1(), 1),
        4 => spherical(pos, g2(), 100),
        5 => {
            let g = g2();
            spherical(&theta(g), g, 1)
        }
        6 => {
            let g = dist.iter().map(|v| v.powf(0.1)).sum::<f64>();
            spherical(&theta(g), g, 1)
        }
        7 => {
            let g = 1.0 + 9.0 / k * dist.iter().sum::<f64>();
            let h = m as f64
                - pos
                    .iter()
                    .map(|f| f / (1.0 + g) * (1.0 + (3.0 * PI * f).sin()))
                    .sum::<f64>();
            let mut f = pos.to_vec();
            f.push((1.0 + g) * h);
            f
        }
        _ => unreachable!("DTLZ{which} does not exist"),
    }
}

/// A point of DTLZ5/6's front: `theta_1` free, the other angles `pi/4`.
pub(crate) fn curve_point(t: f64, m: usize) -> Vec<f64> {
    let mut theta = vec![0.5; m - 1];
    theta[0] = t;
    spherical(&theta, 0.0, 1)
}

/// A point of DTLZ7's front (before removing dominated parts): the first
/// `m - 1` objectives free in [0, 1], the last `2m - sum f_i (1 + sin(3 pi f_i))`.
pub(crate) fn dtlz7_point(f: &[f64]) -> Vec<f64> {
    let m = f.len() + 1;
    let mut out = f.to_vec();
    out.push(
        2.0 * m as f64
            - f.iter()
                .map(|v| v * (1.0 + (3.0 * PI * v).sin()))
                .sum::<f64>(),
    );
    out
}
