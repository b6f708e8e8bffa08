//! Hypervolume timing: random non-dominated points on the positive unit sphere,
//! reference point 1.1 per objective (the setting the issue quotes for moocore:
//! 1.6 ms in 2-D and 3.7 ms in 3-D for 10,000 points).
//!
//! Run with `cargo run --release -p dsnn-search --example bench_hypervolume`.
//! With `-- --write DIR` it also writes the 2-D and 3-D point sets as
//! whitespace-separated text (`sphere2d.txt`, `sphere3d.txt`), so that another
//! implementation (e.g. moocore) can be timed on exactly the same input.

use std::time::Instant;

use dsnn_search::pareto::{hypervolume, hypervolume_contributions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn sphere_points(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            // |Gaussian| normalised is uniform on the positive orthant of the sphere.
            let v: Vec<f64> = (0..d)
                .map(|_| {
                    let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
                    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()).abs()
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

/// Median wall time in milliseconds of `reps` runs of `f`, and its last result.
fn time_ms(reps: usize, mut f: impl FnMut() -> f64) -> (f64, f64) {
    let mut times = Vec::with_capacity(reps);
    let mut value = 0.0;
    for _ in 0..reps {
        let t = Instant::now();
        value = std::hint::black_box(f());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[reps / 2], value)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--write")
        .and_then(|i| args.get(i + 1))
    {
        for d in [2, 3] {
            let text: String = sphere_points(10_000, d, 1)
                .iter()
                .map(|p| {
                    let cols: Vec<String> = p.iter().map(|v| format!("{v:.17e}")).collect();
                    cols.join(" ") + "\n"
                })
                .collect();
            let path = format!("{dir}/sphere{d}d.txt");
            std::fs::write(&path, text).expect("write point file");
            eprintln!("wrote {path}");
        }
    }
    println!("| what | d | n | median ms | value |");
    println!("|---|---|---|---|---|");
    for (d, n, reps) in [(2, 10_000, 51), (3, 10_000, 21), (4, 1_000, 3), (5, 300, 3)] {
        let pts = sphere_points(n, d, 1);
        let r = vec![1.1; d];
        let (ms, hv) = time_ms(reps, || hypervolume(&pts, &r));
        println!("| hypervolume | {d} | {n} | {ms:.3} | {hv:.6} |");
    }
    for (d, n, reps) in [(2, 10_000, 21), (3, 300, 3)] {
        let pts = sphere_points(n, d, 2);
        let r = vec![1.1; d];
        let (ms, s) = time_ms(reps, || hypervolume_contributions(&pts, &r).iter().sum());
        println!("| contributions (sum) | {d} | {n} | {ms:.3} | {s:.6} |");
    }
}
