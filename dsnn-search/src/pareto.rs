//! Pareto tools: dominance, non-dominated sorting, crowding distance, exact
//! hypervolume and per-point contributions, IGD+, and objective normalisation.
//!
//! Every objective is **minimised**; negate maximised objectives before calling.
//! Points are slices of equal length; values must be finite (`NaN` is not a
//! meaningful objective: failed trials are kept out of these functions).
//!
//! Hypervolume is exact: a sort-and-sweep in 2-D (O(n log n)), the
//! dimension-sweep with a balanced tree in 3-D (O(n log n)), and WFG with
//! slicing on the last objective above that, recursing down to the 3-D sweep.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// `a` Pareto-dominates `b`: no worse in every objective, better in at least one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut strictly = false;
    for (x, y) in a.iter().zip(b) {
        if x > y {
            return false;
        }
        if x < y {
            strictly = true;
        }
    }
    strictly
}

/// Non-dominated sorting (Deb et al. 2002): all fronts, best first, each a list
/// of indices into `points` in increasing order. O(M N^2).
pub fn non_dominated_sort<P: AsRef<[f64]>>(points: &[P]) -> Vec<Vec<usize>> {
    let n = points.len();
    let mut dominated_by_count = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in (i + 1)..n {
            let (a, b) = (points[i].as_ref(), points[j].as_ref());
            if dominates(a, b) {
                dominates_list[i].push(j);
                dominated_by_count[j] += 1;
            } else if dominates(b, a) {
                dominates_list[j].push(i);
                dominated_by_count[i] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| dominated_by_count[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominates_list[i] {
                dominated_by_count[j] -= 1;
                if dominated_by_count[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(current);
        current = next;
    }
    fronts
}

/// Non-dominated rank of every point (0 = first front).
pub fn ranks<P: AsRef<[f64]>>(points: &[P]) -> Vec<usize> {
    let mut rank = vec![0; points.len()];
    for (r, front) in non_dominated_sort(points).iter().enumerate() {
        for &i in front {
            rank[i] = r;
        }
    }
    rank
}

/// Indices of the non-dominated points (the first front), in increasing order.
/// O(n log n) for two objectives, O(M n^2) otherwise.
pub fn non_dominated<P: AsRef<[f64]>>(points: &[P]) -> Vec<usize> {
    let n = points.len();
    if n > 0 && points[0].as_ref().len() == 2 {
        let mut idx: Vec<usize> = (0..n).collect();
        let p = |i: usize| points[i].as_ref();
        idx.sort_by(|&a, &b| {
            p(a)[0]
                .total_cmp(&p(b)[0])
                .then(p(a)[1].total_cmp(&p(b)[1]))
        });
        let mut kept = Vec::new();
        let mut last: Option<usize> = None;
        for i in idx {
            let keep = match last {
                None => true,
                // Equal points do not dominate each other: keep duplicates.
                Some(j) => p(i)[1] < p(j)[1] || p(i) == p(j),
            };
            if keep {
                kept.push(i);
                last = Some(i);
            }
        }
        kept.sort_unstable();
        return kept;
    }
    (0..n)
        .filter(|&i| !(0..n).any(|j| j != i && dominates(points[j].as_ref(), points[i].as_ref())))
        .collect()
}

/// Crowding distance (Deb et al. 2002) of the points `front` (indices into
/// `points`), in the order of `front`. Boundary points get `f64::INFINITY`;
/// objectives with zero range add nothing.
pub fn crowding_distance<P: AsRef<[f64]>>(points: &[P], front: &[usize]) -> Vec<f64> {
    let n = front.len();
    let mut dist = vec![0.0; n];
    if n == 0 {
        return dist;
    }
    if n <= 2 {
        return vec![f64::INFINITY; n];
    }
    let m = points[front[0]].as_ref().len();
    let mut order: Vec<usize> = (0..n).collect();
    for k in 0..m {
        let val = |i: usize| points[front[i]].as_ref()[k];
        order.sort_by(|&a, &b| val(a).total_cmp(&val(b)));
        let (lo, hi) = (val(order[0]), val(order[n - 1]));
        dist[order[0]] = f64::INFINITY;
        dist[order[n - 1]] = f64::INFINITY;
        let range = hi - lo;
        if range <= 0.0 {
            continue;
        }
        for w in 1..n - 1 {
            let i = order[w];
            if dist[i].is_finite() {
                dist[i] += (val(order[w + 1]) - val(order[w - 1])) / range;
            }
        }
    }
    dist
}

/// A total order on `f64` for tree keys (values are finite here).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Key(f64);
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Exact hypervolume dominated by `points` and bounded by `reference`.
///
/// Points that do not strictly dominate the reference point add nothing.
/// Panics if a point's length differs from the reference's.
pub fn hypervolume<P: AsRef<[f64]>>(points: &[P], reference: &[f64]) -> f64 {
    let d = reference.len();
    let mut flat = Vec::with_capacity(points.len() * d);
    for p in points {
        let p = p.as_ref();
        assert_eq!(p.len(), d, "point and reference differ in dimension");
        if p.iter().zip(reference).all(|(x, r)| x < r) {
            flat.extend_from_slice(p);
        }
    }
    hv_flat(&mut flat, d, reference)
}

/// Hypervolume of the points in `flat` (row-major, `d` columns), all of which
/// strictly dominate `reference`. May reorder `flat`.
fn hv_flat(flat: &mut [f64], d: usize, reference: &[f64]) -> f64 {
    let n = flat.len() / d;
    if n == 0 {
        return 0.0;
    }
    match d {
        0 => 0.0,
        1 => reference[0] - flat.iter().cloned().fold(f64::INFINITY, f64::min),
        2 => hv2(flat, reference),
        3 => hv3(flat, reference),
        _ => wfg(flat, d, reference),
    }
}

fn hv2(flat: &[f64], r: &[f64]) -> f64 {
    let n = flat.len() / 2;
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_unstable_by(|&a, &b| {
        flat[2 * a]
            .total_cmp(&flat[2 * b])
            .then(flat[2 * a + 1].total_cmp(&flat[2 * b + 1]))
    });
    let mut hv = 0.0;
    let mut best_y = r[1];
    for i in idx {
        let (x, y) = (flat[2 * i], flat[2 * i + 1]);
        if y < best_y {
            hv += (r[0] - x) * (best_y - y);
            best_y = y;
        }
    }
    hv
}

/// 3-D dimension sweep: points in increasing z; the (x, y) staircase of the
/// points seen so far lives in a tree ordered by x (y then decreases), and its
/// dominated area is updated incrementally as points enter and dominate others.
fn hv3(flat: &[f64], r: &[f64]) -> f64 {
    let n = flat.len() / 3;
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_unstable_by(|&a, &b| flat[3 * a + 2].total_cmp(&flat[3 * b + 2]));
    let mut front: BTreeMap<Key, f64> = BTreeMap::new();
    let mut area = 0.0;
    let mut volume = 0.0;
    for (pos, &i) in idx.iter().enumerate() {
        let (x, y) = (flat[3 * i], flat[3 * i + 1]);
        // Dominated (weakly) by the staircase point with the largest x <= x?
        let dominated = front
            .range(..=Key(x))
            .next_back()
            .is_some_and(|(_, &qy)| qy <= y);
        if !dominated {
            let y_left = front
                .range(..Key(x))
                .next_back()
                .map_or(r[1], |(_, &qy)| qy);
            // Remove the points this one dominates: x' >= x and y' >= y.
            let mut removed_area = 0.0;
            let mut x_right = r[0];
            let mut prev: Option<(f64, f64)> = None;
            let mut to_remove = Vec::new();
            for (&Key(qx), &qy) in front.range(Key(x)..) {
                if qy < y {
                    x_right = qx;
                    break;
                }
                if let Some((px, py)) = prev {
                    removed_area += (qx - px) * (y_left - py);
                }
                prev = Some((qx, qy));
                to_remove.push(Key(qx));
            }
            if let Some((px, py)) = prev {
                removed_area += (x_right - px) * (y_left - py);
            }
            for k in to_remove {
                front.remove(&k);
            }
            area += (x_right - x) * (y_left - y) - removed_area;
            front.insert(Key(x), y);
        }
        let z_next = if pos + 1 < n {
            flat[3 * idx[pos + 1] + 2]
        } else {
            r[2]
        };
        volume += area * (z_next - flat[3 * i + 2]);
    }
    volume
}

/// WFG (While, Bradstreet and Barone 2012) with the points sorted worst-first on
/// the last objective, so that each limit set is flat in that objective and its
/// hypervolume is computed one dimension lower.
fn wfg(flat: &mut [f64], d: usize, r: &[f64]) -> f64 {
    let n = flat.len() / d;
    let mut rows: Vec<&[f64]> = flat.chunks(d).collect();
    rows.sort_by(|a, b| b[d - 1].total_cmp(&a[d - 1]));
    let rows: Vec<Vec<f64>> = rows.into_iter().map(|r| r.to_vec()).collect();
    let dm = d - 1;
    let r_low = &r[..dm];
    let mut total = 0.0;
    let mut limit: Vec<f64> = Vec::with_capacity(n * dm);
    for k in 0..n {
        let p = &rows[k];
        let height = r[dm] - p[dm];
        if height <= 0.0 {
            continue;
        }
        let incl: f64 = (0..dm).map(|i| r[i] - p[i]).product();
        limit.clear();
        for q in &rows[k + 1..] {
            for i in 0..dm {
                limit.push(p[i].max(q[i]));
            }
        }
        let mut nd = nondominated_flat(&limit, dm);
        let excl = incl - hv_flat(&mut nd, dm, r_low);
        total += height * excl;
    }
    total
}

/// The rows of `flat` not weakly dominated by another row (duplicates kept once).
fn nondominated_flat(flat: &[f64], d: usize) -> Vec<f64> {
    let n = flat.len() / d;
    let row = |i: usize| &flat[i * d..(i + 1) * d];
    let mut idx: Vec<usize> = (0..n).collect();
    // Sorting by the coordinate sum puts any dominator before what it dominates.
    let sums: Vec<f64> = (0..n).map(|i| row(i).iter().sum()).collect();
    idx.sort_by(|&a, &b| sums[a].total_cmp(&sums[b]));
    let mut kept: Vec<usize> = Vec::new();
    'outer: for &i in &idx {
        for &j in &kept {
            if row(j).iter().zip(row(i)).all(|(a, b)| a <= b) {
                continue 'outer;
            }
        }
        kept.push(i);
    }
    let mut out = Vec::with_capacity(kept.len() * d);
    for i in kept {
        out.extend_from_slice(row(i));
    }
    out
}

/// Each point's exclusive hypervolume contribution: the volume lost if it alone
/// were removed. Dominated points, duplicates and points outside the reference
/// contribute 0. O(n log n) in 2-D; n hypervolume computations otherwise.
pub fn hypervolume_contributions<P: AsRef<[f64]>>(points: &[P], reference: &[f64]) -> Vec<f64> {
    let n = points.len();
    let d = reference.len();
    let inside: Vec<bool> = points
        .iter()
        .map(|p| p.as_ref().iter().zip(reference).all(|(x, r)| x < r))
        .collect();
    let mut out = vec![0.0; n];
    if d == 2 {
        let mut idx: Vec<usize> = (0..n).filter(|&i| inside[i]).collect();
        idx.sort_by(|&a, &b| {
            let (pa, pb) = (points[a].as_ref(), points[b].as_ref());
            pa[0].total_cmp(&pb[0]).then(pa[1].total_cmp(&pb[1]))
        });
        // The staircase: strictly decreasing y in increasing x. Each staircase
        // point owns a disjoint box up to its neighbours; the area it alone covers
        // is that box less what the other points inside the box still cover.
        let mut stair: Vec<usize> = Vec::new();
        let mut others: Vec<usize> = Vec::new();
        for i in idx {
            let p = points[i].as_ref();
            if stair.last().is_none_or(|&j| p[1] < points[j].as_ref()[1]) {
                stair.push(i);
            } else {
                others.push(i);
            }
        }
        let sx: Vec<f64> = stair.iter().map(|&i| points[i].as_ref()[0]).collect();
        let mut in_box: Vec<Vec<f64>> = vec![Vec::new(); stair.len()];
        let y_prev = |s: usize| {
            if s == 0 {
                reference[1]
            } else {
                points[stair[s - 1]].as_ref()[1]
            }
        };
        for q in others {
            let p = points[q].as_ref();
            let s = sx.partition_point(|&x| x <= p[0]) - 1;
            if p[1] < y_prev(s) {
                in_box[s].extend_from_slice(p);
            }
        }
        for (s, &i) in stair.iter().enumerate() {
            let p = points[i].as_ref();
            let corner = [sx.get(s + 1).copied().unwrap_or(reference[0]), y_prev(s)];
            let covered = hv2(&in_box[s], &corner);
            out[i] = (corner[0] - p[0]) * (corner[1] - p[1]) - covered;
        }
        return out;
    }
    let idx: Vec<usize> = (0..n).filter(|&i| inside[i]).collect();
    let pts: Vec<&[f64]> = idx.iter().map(|&i| points[i].as_ref()).collect();
    let total = hypervolume(&pts, reference);
    let mut rest: Vec<&[f64]> = Vec::with_capacity(pts.len());
    for k in non_dominated(&pts) {
        rest.clear();
        rest.extend(
            pts.iter()
                .enumerate()
                .filter(|&(q, _)| q != k)
                .map(|(_, p)| *p),
        );
        out[idx[k]] = (total - hypervolume(&rest, reference)).max(0.0);
    }
    out
}

/// How to break ties within the last non-dominated front that only partly fits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    /// Prefer larger crowding distance (NSGA-II).
    #[default]
    Crowding,
    /// Prefer larger hypervolume contribution (objectives min-max normalised over
    /// the candidates, reference 1.1), removing the least contributor one at a time.
    HypervolumeContribution,
}

/// Choose `k` of `points` by non-dominated rank, breaking ties in the last front
/// by `tie`; returns indices, best fronts first. Deterministic: equal scores keep
/// index order.
pub fn select_by_rank<P: AsRef<[f64]>>(points: &[P], k: usize, tie: TieBreak) -> Vec<usize> {
    let mut chosen = Vec::with_capacity(k.min(points.len()));
    for front in non_dominated_sort(points) {
        if chosen.len() >= k {
            break;
        }
        let room = k - chosen.len();
        if front.len() <= room {
            chosen.extend(front);
            continue;
        }
        match tie {
            TieBreak::Crowding => {
                let cd = crowding_distance(points, &front);
                let mut order: Vec<usize> = (0..front.len()).collect();
                order.sort_by(|&a, &b| cd[b].total_cmp(&cd[a]));
                chosen.extend(order.into_iter().take(room).map(|i| front[i]));
            }
            TieBreak::HypervolumeContribution => {
                let pts: Vec<&[f64]> = points.iter().map(|p| p.as_ref()).collect();
                let norm = Normalizer::fit(&pts).expect("non-empty");
                let mut left: Vec<usize> = front.clone();
                while left.len() > room {
                    let sub: Vec<Vec<f64>> = left.iter().map(|&i| norm.transform(pts[i])).collect();
                    let r = vec![1.1; sub[0].len()];
                    let c = hypervolume_contributions(&sub, &r);
                    let mut worst = 0;
                    for (j, cj) in c.iter().enumerate() {
                        if *cj < c[worst] {
                            worst = j;
                        }
                    }
                    left.remove(worst);
                }
                chosen.extend(left);
            }
        }
        break;
    }
    chosen
}

/// Inverted generational distance plus (Ishibuchi et al. 2015) of `approximation`
/// against a dense sample `reference_front` of the true front: the mean over
/// reference points z of min over a of sqrt(sum max(a_i - z_i, 0)^2).
/// Returns `f64::INFINITY` for an empty approximation.
pub fn igd_plus<P: AsRef<[f64]>, Q: AsRef<[f64]>>(
    approximation: &[P],
    reference_front: &[Q],
) -> f64 {
    if approximation.is_empty() {
        return f64::INFINITY;
    }
    if reference_front.is_empty() {
        return 0.0;
    }
    let sum: f64 = reference_front
        .iter()
        .map(|z| {
            let z = z.as_ref();
            approximation
                .iter()
                .map(|a| {
                    a.as_ref()
                        .iter()
                        .zip(z)
                        .map(|(ai, zi)| (ai - zi).max(0.0).powi(2))
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min)
                .sqrt()
        })
        .sum();
    sum / reference_front.len() as f64
}

/// Min-max normalisation of objectives, fitted on a set of points (for example
/// the successful trials only) and applied to any point.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalizer {
    /// Per-objective minimum seen when fitting.
    pub lower: Vec<f64>,
    /// Per-objective maximum seen when fitting.
    pub upper: Vec<f64>,
}

impl Normalizer {
    /// Fit the bounds to `points`; `None` when there are no points.
    pub fn fit<P: AsRef<[f64]>>(points: &[P]) -> Option<Self> {
        let first = points.first()?.as_ref();
        let mut lower = first.to_vec();
        let mut upper = first.to_vec();
        for p in points {
            for (k, &v) in p.as_ref().iter().enumerate() {
                lower[k] = lower[k].min(v);
                upper[k] = upper[k].max(v);
            }
        }
        Some(Normalizer { lower, upper })
    }

    /// Map a point to `(x - lower) / (upper - lower)` per objective (an objective
    /// with zero range maps to 0 at its value).
    pub fn transform(&self, point: &[f64]) -> Vec<f64> {
        point
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let range = self.upper[k] - self.lower[k];
                if range > 0.0 {
                    (v - self.lower[k]) / range
                } else {
                    v - self.lower[k]
                }
            })
            .collect()
    }

    /// Map a normalised point back to objective units.
    pub fn inverse(&self, point: &[f64]) -> Vec<f64> {
        point
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let range = self.upper[k] - self.lower[k];
                if range > 0.0 {
                    self.lower[k] + v * range
                } else {
                    self.lower[k] + v
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Inclusion-exclusion over all subsets: exact, exponential, for tiny sets.
    fn hv_brute(points: &[Vec<f64>], r: &[f64]) -> f64 {
        let pts: Vec<&Vec<f64>> = points
            .iter()
            .filter(|p| p.iter().zip(r).all(|(x, y)| x < y))
            .collect();
        let n = pts.len();
        let mut total = 0.0;
        for mask in 1u32..(1 << n) {
            let mut corner = vec![f64::NEG_INFINITY; r.len()];
            for (i, p) in pts.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    for k in 0..r.len() {
                        corner[k] = corner[k].max(p[k]);
                    }
                }
            }
            let vol: f64 = corner.iter().zip(r).map(|(c, y)| y - c).product();
            total += if mask.count_ones() % 2 == 1 {
                vol
            } else {
                -vol
            };
        }
        total
    }

    fn random_points(rng: &mut ChaCha8Rng, n: usize, d: usize, grid: bool) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| {
                (0..d)
                    .map(|_| {
                        if grid {
                            rng.random_range(0..5) as f64 * 0.25
                        } else {
                            rng.random::<f64>()
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn hypervolume_matches_inclusion_exclusion() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        for d in 1..=5 {
            for trial in 0..60 {
                let n = 1 + trial % 11;
                // Grid values force ties and duplicates.
                let pts = random_points(&mut rng, n, d, trial % 2 == 0);
                let r = vec![1.1; d];
                let a = hypervolume(&pts, &r);
                let b = hv_brute(&pts, &r);
                assert!((a - b).abs() < 1e-12, "d={d} n={n}: {a} vs {b} for {pts:?}");
            }
        }
    }

    #[test]
    fn hypervolume_simple_cases() {
        assert_eq!(hypervolume(&[[0.0, 0.0]], &[1.0, 1.0]), 1.0);
        assert_eq!(hypervolume(&[[0.5, 0.5], [2.0, 0.0]], &[1.0, 1.0]), 0.25);
        assert_eq!(hypervolume::<[f64; 3]>(&[], &[1.0, 1.0, 1.0]), 0.0);
        let pts = [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]];
        // Three boxes of 0.5 overlapping pairwise in 0.25 and all in 0.125.
        assert!((hypervolume(&pts, &[1.0, 1.0, 1.0]) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn contributions_match_leave_one_out() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for d in 2..=4 {
            for trial in 0..30 {
                let pts = random_points(&mut rng, 2 + trial % 9, d, trial % 3 == 0);
                let r = vec![1.0; d];
                let c = hypervolume_contributions(&pts, &r);
                let total = hypervolume(&pts, &r);
                for (i, ci) in c.iter().enumerate() {
                    let rest: Vec<Vec<f64>> = pts
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(_, p)| p.clone())
                        .collect();
                    let expect = total - hypervolume(&rest, &r);
                    assert!((ci - expect).abs() < 1e-12, "d={d} i={i}: {ci} vs {expect}");
                }
            }
        }
    }

    #[test]
    fn sorting_and_crowding() {
        let pts = vec![
            vec![1.0, 5.0],
            vec![2.0, 3.0],
            vec![3.0, 4.0],
            vec![4.0, 1.0],
            vec![5.0, 5.0],
            vec![2.0, 3.0],
        ];
        let fronts = non_dominated_sort(&pts);
        assert_eq!(fronts, vec![vec![0, 1, 3, 5], vec![2], vec![4]]);
        assert_eq!(ranks(&pts), vec![0, 0, 1, 0, 2, 0]);
        assert_eq!(non_dominated(&pts), vec![0, 1, 3, 5]);
        let cd = crowding_distance(&pts, &fronts[0]);
        assert!(cd[0].is_infinite() && cd[2].is_infinite());
        // Points 1 and 5 coincide: interior, finite, and together not crowded out.
        assert!(cd[1].is_finite() && cd[3].is_finite());
        assert!(cd[1] + cd[3] > 0.0);
        // The middle of three points: each objective adds (4 - 0) / 4.
        let line = vec![vec![0.0, 4.0], vec![1.0, 3.0], vec![4.0, 0.0]];
        let cd = crowding_distance(&line, &[0, 1, 2]);
        assert!((cd[1] - (4.0 / 4.0 + 4.0 / 4.0)).abs() < 1e-15);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let pts = random_points(&mut rng, 80, 3, false);
        let fronts = non_dominated_sort(&pts);
        assert_eq!(fronts.iter().map(Vec::len).sum::<usize>(), 80);
        for (r, f) in fronts.iter().enumerate() {
            for &i in f {
                for &j in f {
                    assert!(!dominates(&pts[i], &pts[j]));
                }
                if r > 0 {
                    assert!(fronts[r - 1].iter().any(|&j| dominates(&pts[j], &pts[i])));
                }
            }
        }
    }

    #[test]
    fn selection_by_rank_then_tie_break() {
        let pts = vec![
            vec![0.0, 1.0],
            vec![0.1, 0.8],
            vec![0.5, 0.5],
            vec![0.52, 0.48],
            vec![1.0, 0.0],
            vec![0.6, 0.9],
        ];
        // Front 0 has 5 points; keep 4: crowding drops one of the close pair.
        let s = select_by_rank(&pts, 4, TieBreak::Crowding);
        assert_eq!(s.len(), 4);
        assert!(s.contains(&0) && s.contains(&4) && s.contains(&1));
        assert!(s.contains(&2) ^ s.contains(&3));
        let s = select_by_rank(&pts, 4, TieBreak::HypervolumeContribution);
        assert!(s.contains(&2) ^ s.contains(&3));
        // All of front 0, then the dominated point.
        let s = select_by_rank(&pts, 6, TieBreak::Crowding);
        assert_eq!(s, vec![0, 1, 2, 3, 4, 5]);
        assert!(select_by_rank::<Vec<f64>>(&[], 3, TieBreak::Crowding).is_empty());
    }

    #[test]
    fn igd_plus_and_normaliser() {
        let front = vec![vec![0.0, 1.0], vec![1.0, 0.0]];
        assert_eq!(igd_plus(&front, &front), 0.0);
        // (0.5, 1.5) is 0.5 worse than (0,1) in f1 and in f2 of (1,0) it is 1.5 worse.
        let approx = vec![vec![0.5, 1.5]];
        let expect = (0.5f64.powi(2) + 0.5f64.powi(2)).sqrt() * 0.5 + 1.5 * 0.5;
        assert!((igd_plus(&approx, &front) - expect).abs() < 1e-15);
        // Points better than the reference front cost nothing.
        assert_eq!(igd_plus(&[vec![-1.0, -1.0]], &front), 0.0);
        let n = Normalizer::fit(&[vec![1.0, 10.0], vec![3.0, 10.0]]).unwrap();
        assert_eq!(n.transform(&[2.0, 10.0]), vec![0.5, 0.0]);
        assert_eq!(n.inverse(&[0.5, 0.0]), vec![2.0, 10.0]);
        assert!(Normalizer::fit::<Vec<f64>>(&[]).is_none());
    }
}
