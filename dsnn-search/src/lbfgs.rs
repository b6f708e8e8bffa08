//! A small limited-memory BFGS minimiser with a box (by projection) and a
//! backtracking Armijo line search, for the Gaussian process's
//! hyperparameters (a few to a few dozen variables, smooth objective).

/// Pairs of steps and gradient changes kept.
const MEMORY: usize = 7;

/// Minimise `f` (value and gradient; `None` where it is undefined) from `x0`,
/// keeping every coordinate in `bounds`, for at most `max_iterations`
/// iterations. Returns the best point found, or `None` if `f` is undefined
/// at the (projected) start.
pub(crate) fn minimise<F>(
    f: F,
    x0: Vec<f64>,
    bounds: (f64, f64),
    max_iterations: usize,
) -> Option<Vec<f64>>
where
    F: Fn(&[f64]) -> Option<(f64, Vec<f64>)>,
{
    let project = |v: &mut [f64]| {
        for t in v.iter_mut() {
            *t = t.clamp(bounds.0, bounds.1);
        }
    };
    let mut x = x0;
    project(&mut x);
    let (mut fx, mut g) = f(&x)?;
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    for _ in 0..max_iterations {
        let gnorm = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if gnorm < 1e-6 {
            break;
        }
        // Two-loop recursion for the quasi-Newton direction.
        let mut q = g.clone();
        let mut a = vec![0.0; s_hist.len()];
        for k in (0..s_hist.len()).rev() {
            let rho = 1.0 / dot(&y_hist[k], &s_hist[k]);
            a[k] = rho * dot(&s_hist[k], &q);
            axpy(-a[k], &y_hist[k], &mut q);
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            _ => 1.0 / gnorm.max(1.0),
        };
        for v in q.iter_mut() {
            *v *= gamma;
        }
        for k in 0..s_hist.len() {
            let rho = 1.0 / dot(&y_hist[k], &s_hist[k]);
            let b = rho * dot(&y_hist[k], &q);
            axpy(a[k] - b, &s_hist[k], &mut q);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        if dot(&dir, &g) >= 0.0 {
            // Not a descent direction: steepest descent, memory cleared.
            dir = g.iter().map(|v| -v / gnorm.max(1.0)).collect();
            s_hist.clear();
            y_hist.clear();
        }
        // Backtracking line search on the projected path.
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..30 {
            let mut xn: Vec<f64> = x.iter().zip(&dir).map(|(a, b)| a + step * b).collect();
            project(&mut xn);
            let moved: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
            if let Some((fnew, gnew)) = f(&xn) {
                if fnew <= fx + 1e-4 * dot(&g, &moved) && fnew.is_finite() {
                    accepted = Some((xn, fnew, gnew, moved));
                    break;
                }
            }
            step *= 0.5;
        }
        let Some((xn, fnew, gnew, moved)) = accepted else {
            break;
        };
        let yk: Vec<f64> = gnew.iter().zip(&g).map(|(a, b)| a - b).collect();
        if dot(&moved, &yk) > 1e-12 {
            s_hist.push(moved);
            y_hist.push(yk);
            if s_hist.len() > MEMORY {
                s_hist.remove(0);
                y_hist.remove(0);
            }
        }
        let improvement = fx - fnew;
        x = xn;
        fx = fnew;
        g = gnew;
        if improvement.abs() < 1e-9 * (1.0 + fx.abs()) {
            break;
        }
    }
    Some(x)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (t, v) in y.iter_mut().zip(x) {
        *t += alpha * v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_rosenbrock_and_respects_the_box() {
        let rosen = |x: &[f64]| {
            let (a, b) = (x[0], x[1]);
            let v = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            let g = vec![
                -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
                200.0 * (b - a * a),
            ];
            Some((v, g))
        };
        let x = minimise(rosen, vec![-1.2, 1.0], (-5.0, 5.0), 500).unwrap();
        assert!(
            (x[0] - 1.0).abs() < 1e-3 && (x[1] - 1.0).abs() < 1e-3,
            "{x:?}"
        );
        // With the box [-5, 0.5] the minimum is on the face a = 0.5.
        let x = minimise(rosen, vec![-1.2, 1.0], (-5.0, 0.5), 500).unwrap();
        assert!(x.iter().all(|v| *v <= 0.5));
        assert!(
            (x[0] - 0.5).abs() < 1e-3 && (x[1] - 0.25).abs() < 1e-2,
            "{x:?}"
        );
    }
}
