//! Shift weights: their packed storage (sign + shift in `weight_bits` bits)
//! and the shift-sorted plan the kernels run on.

use serde::{Deserialize, Serialize};

/// One shift weight: zero, or `±2^-m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShiftWeight {
    /// An exact zero (a Q master weight of 0, or a PS sign rounded to 0).
    Zero,
    /// `(-1)^negative * 2^-m`.
    Pow {
        /// Whether the weight is negative.
        negative: bool,
        /// The right shift, `-p`.
        m: u8,
    },
}

impl ShiftWeight {
    /// The largest right shift `m` among `weights` (0 when all are zero):
    /// the accumulator shift at which every product is exact.
    pub fn largest_shift(weights: &[ShiftWeight]) -> u32 {
        weights
            .iter()
            .filter_map(|w| match w {
                ShiftWeight::Pow { m, .. } => Some(u32::from(*m)),
                ShiftWeight::Zero => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The weight of a float that is zero or a signed power of two `2^p`
    /// with `p <= 0`; `None` for anything else.
    pub fn from_f32(v: f32) -> Option<ShiftWeight> {
        if v == 0.0 {
            return Some(ShiftWeight::Zero);
        }
        let bits = v.to_bits();
        let exp = ((bits >> 23) & 0xff) as i32 - 127;
        if bits & 0x007f_ffff != 0 || !(-126..=0).contains(&exp) {
            return None;
        }
        Some(ShiftWeight::Pow {
            negative: v < 0.0,
            m: (-exp) as u8,
        })
    }

    /// The weight's value.
    pub fn value(&self) -> f64 {
        match *self {
            ShiftWeight::Zero => 0.0,
            ShiftWeight::Pow { negative, m } => {
                let v = (-f64::from(m)).exp2();
                if negative {
                    -v
                } else {
                    v
                }
            }
        }
    }
}

/// Weights packed as codes of `code_bits` bits, little-endian bit order.
///
/// A code is a sign bit (the top bit, 1 = negative) above the shift
/// magnitude `m = -p` in the `code_bits - 1` low bits. When the layer has
/// zero weights, the positive code with all magnitude bits set means zero;
/// `code_bits` is `weight_bits`, or `weight_bits + 1` for a Q layer that
/// uses every magnitude of its range and also has exact zeros.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedWeights {
    /// Bits per code.
    pub code_bits: u32,
    /// Whether the all-ones positive code means zero.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zero_code: bool,
    /// Number of codes (`cout x fan_in`; not stored in the file).
    #[serde(skip)]
    pub len: usize,
    /// The codes (not part of the JSON description; stored as a tensor).
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

impl PackedWeights {
    /// Packs `weights` into `weight_bits`-bit codes (one more bit if needed
    /// for zeros, see the type's documentation).
    pub fn pack(weights: &[ShiftWeight], weight_bits: u32) -> Result<Self, String> {
        let mag_max = (1u32 << (weight_bits - 1)) - 1;
        let mut max_m = 0u32;
        let mut has_zero = false;
        for w in weights {
            match *w {
                ShiftWeight::Zero => has_zero = true,
                ShiftWeight::Pow { m, .. } => max_m = max_m.max(u32::from(m)),
            }
        }
        if max_m > mag_max {
            return Err(format!(
                "shift -{max_m} does not fit {weight_bits}-bit weights (allowed: 0..=-{mag_max})"
            ));
        }
        let code_bits = if has_zero && max_m == mag_max {
            weight_bits + 1
        } else {
            weight_bits
        };
        let zero = (1u64 << (code_bits - 1)) - 1;
        let mut bytes = vec![0u8; (weights.len() * code_bits as usize).div_ceil(8)];
        for (i, w) in weights.iter().enumerate() {
            let code = match *w {
                ShiftWeight::Zero => zero,
                ShiftWeight::Pow { negative, m } => {
                    (u64::from(negative) << (code_bits - 1)) | u64::from(m)
                }
            };
            let bit = i * code_bits as usize;
            for b in 0..code_bits as usize {
                if code >> b & 1 == 1 {
                    bytes[(bit + b) / 8] |= 1 << ((bit + b) % 8);
                }
            }
        }
        Ok(PackedWeights {
            code_bits,
            zero_code: has_zero,
            len: weights.len(),
            bytes,
        })
    }

    /// The code of weight `i`.
    pub fn code(&self, i: usize) -> u32 {
        let bit = i * self.code_bits as usize;
        let mut code = 0u32;
        for b in 0..self.code_bits as usize {
            let at = bit + b;
            code |= u32::from(self.bytes[at / 8] >> (at % 8) & 1) << b;
        }
        code
    }

    /// Decodes weight `i`.
    pub fn get(&self, i: usize) -> ShiftWeight {
        let code = self.code(i);
        let mag_bits = self.code_bits - 1;
        let m = code & ((1 << mag_bits) - 1);
        let negative = code >> mag_bits == 1;
        if self.zero_code && !negative && m == (1 << mag_bits) - 1 {
            ShiftWeight::Zero
        } else {
            ShiftWeight::Pow {
                negative,
                m: m as u8,
            }
        }
    }

    /// Decodes every weight.
    pub fn unpack(&self) -> Vec<ShiftWeight> {
        (0..self.len).map(|i| self.get(i)).collect()
    }
}

/// Weights grouped by shift and sign: for each output channel, buckets of
/// input indices whose weights are `+2^-m` or `-2^-m`. The kernels add the
/// inputs of a bucket in 32-bit lanes and shift the bucket's sum once.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Bucket range of each output channel.
    pub channels: Vec<(u32, u32)>,
    /// All buckets, channel after channel.
    pub buckets: Vec<Bucket>,
    /// Input indices; a bucket's positive indices, then its negative ones.
    pub idx: Vec<u32>,
    /// Largest number of indices in one bucket (bounds a bucket's sum).
    pub max_bucket: usize,
    /// Number of non-zero weights.
    pub nonzero: usize,
    /// Inputs per output; every index is below it.
    pub fan_in: usize,
    /// The same weights split by input rows into runs of at most
    /// [`CHUNK_ROWS`] or the limit given to [`Plan::chunked`] (each a plan
    /// over all `fan_in` inputs holding only its rows' weights), so that a
    /// kernel can keep the rows it reads in L1.
    /// Empty when `fan_in` is within the limit, or when some bucket is floored
    /// (`S < m`): a floored bucket's sum must not be split.
    pub chunks: Vec<Plan>,
}

/// Most input rows per [`Plan::chunks`] entry: 320 rows of 16 `i32` lanes
/// are 20 KB, within a 32 KB L1 data cache.
pub const CHUNK_ROWS: usize = 320;

/// Most input rows per row chunk of the batch-lanes convolution
/// (`ShiftLayer::lane_plan` in the model module): 16 input channels of a 3x3
/// kernel, whose vectors under a tile of 4 output positions (16 channels x
/// 3 rows x 6 columns x 64 bytes, 18 KB) stay in a 32 KB L1.
pub const LANE_CHUNK_ROWS: usize = 144;

/// The weights `±2^-m` of one output channel for one `m`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    /// `S - m`: how far the bucket's sum is shifted left (right when negative).
    pub shift: i32,
    /// Start of the positive indices in [`Plan::idx`].
    pub start: u32,
    /// End of the positive indices, start of the negative ones.
    pub mid: u32,
    /// End of the negative indices.
    pub end: u32,
}

impl Plan {
    /// The plan of `cout x fan_in` weights with accumulator shift
    /// `acc_shift`, in row chunks of at most [`CHUNK_ROWS`].
    pub fn new(weights: &[ShiftWeight], cout: usize, fan_in: usize, acc_shift: u32) -> Plan {
        Plan::chunked(weights, cout, fan_in, acc_shift, CHUNK_ROWS)
    }

    /// [`Plan::new`] with row chunks of at most `max_rows` rows (as equal
    /// as they can be).
    pub fn chunked(
        weights: &[ShiftWeight],
        cout: usize,
        fan_in: usize,
        acc_shift: u32,
        max_rows: usize,
    ) -> Plan {
        let mut plan = Plan::unchunked(weights, cout, fan_in, acc_shift);
        if fan_in > max_rows && plan.buckets.iter().all(|b| b.shift >= 0) {
            let n = fan_in.div_ceil(max_rows);
            let rows = fan_in.div_ceil(n);
            plan.chunks = (0..n)
                .map(|q| {
                    let keep = q * rows..((q + 1) * rows).min(fan_in);
                    let part: Vec<ShiftWeight> = weights[..cout * fan_in]
                        .iter()
                        .enumerate()
                        .map(|(i, &w)| {
                            if keep.contains(&(i % fan_in)) {
                                w
                            } else {
                                ShiftWeight::Zero
                            }
                        })
                        .collect();
                    Plan::unchunked(&part, cout, fan_in, acc_shift)
                })
                .collect();
        }
        plan
    }

    /// [`Plan::new`] without [`Plan::chunks`].
    fn unchunked(weights: &[ShiftWeight], cout: usize, fan_in: usize, acc_shift: u32) -> Plan {
        let mut plan = Plan {
            fan_in,
            ..Plan::default()
        };
        let mut by_m: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
        for c in 0..cout {
            by_m.iter_mut().for_each(|(p, n)| {
                p.clear();
                n.clear()
            });
            for (k, w) in weights[c * fan_in..(c + 1) * fan_in].iter().enumerate() {
                if let ShiftWeight::Pow { negative, m } = *w {
                    let m = usize::from(m);
                    if by_m.len() <= m {
                        by_m.resize(m + 1, (Vec::new(), Vec::new()));
                    }
                    if negative {
                        by_m[m].1.push(k as u32);
                    } else {
                        by_m[m].0.push(k as u32);
                    }
                }
            }
            let first = plan.buckets.len() as u32;
            for (m, (pos, neg)) in by_m.iter().enumerate() {
                if pos.is_empty() && neg.is_empty() {
                    continue;
                }
                let start = plan.idx.len() as u32;
                plan.idx.extend_from_slice(pos);
                let mid = plan.idx.len() as u32;
                plan.idx.extend_from_slice(neg);
                plan.max_bucket = plan.max_bucket.max(pos.len() + neg.len());
                plan.nonzero += pos.len() + neg.len();
                plan.buckets.push(Bucket {
                    shift: acc_shift as i32 - m as i32,
                    start,
                    mid,
                    end: plan.idx.len() as u32,
                });
            }
            plan.channels.push((first, plan.buckets.len() as u32));
        }
        plan
    }

    /// The buckets of output channel `c`.
    #[inline]
    pub fn channel(&self, c: usize) -> &[Bucket] {
        let (a, b) = self.channels[c];
        &self.buckets[a as usize..b as usize]
    }

    /// Channel `c`'s shift-add sum over one input vector `x`, bucket by
    /// bucket: `sum_m shl(P_m - N_m, shift_m)` (the scalar form the vector
    /// kernels reproduce).
    #[inline]
    pub fn shifted_sum(&self, c: usize, x: &[i32]) -> i64 {
        let mut acc = 0i64;
        for b in self.channel(c) {
            let mut sum = 0i64;
            for &k in &self.idx[b.start as usize..b.mid as usize] {
                sum += i64::from(x[k as usize]);
            }
            for &k in &self.idx[b.mid as usize..b.end as usize] {
                sum -= i64::from(x[k as usize]);
            }
            acc += crate::format::shl(sum, b.shift);
        }
        acc
    }
}

/// Lanes of one [`DenseShifts`] group (eight 64-bit lanes).
pub const DENSE_LANES: usize = 8;

/// The weights of a linear layer as left-shift counts, eight output units
/// at a time, for few-image inference: unit `c` gets `x[k] << (S - m)`
/// added to its positive or negative sum. A count of 64 or more adds zero
/// (zero weights, and the other sign's sum). Only built when every
/// `S - m >= 0`, where it equals the bucket sums exactly (a linear map).
#[derive(Debug, Clone)]
pub struct DenseShifts {
    /// Groups of eight units; within a group, input after input, eight counts.
    pub pos: Vec<u8>,
    /// The same for negative weights.
    pub neg: Vec<u8>,
    /// Number of groups (`ceil(cout / 8)`).
    pub groups: usize,
    /// Inputs per unit.
    pub fan_in: usize,
}

impl DenseShifts {
    /// The dense form of `cout x fan_in` weights, or `None` when some weight
    /// has `m > acc_shift`.
    pub fn new(
        weights: &[ShiftWeight],
        cout: usize,
        fan_in: usize,
        acc_shift: u32,
    ) -> Option<Self> {
        let groups = cout.div_ceil(DENSE_LANES);
        let mut pos = vec![64u8; groups * fan_in * DENSE_LANES];
        let mut neg = pos.clone();
        for c in 0..cout {
            let (g, lane) = (c / DENSE_LANES, c % DENSE_LANES);
            for k in 0..fan_in {
                if let ShiftWeight::Pow { negative, m } = weights[c * fan_in + k] {
                    let n = acc_shift.checked_sub(u32::from(m))? as u8;
                    let at = (g * fan_in + k) * DENSE_LANES + lane;
                    if negative {
                        neg[at] = n;
                    } else {
                        pos[at] = n;
                    }
                }
            }
        }
        Some(DenseShifts {
            pos,
            neg,
            groups,
            fan_in,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_with_and_without_zero_codes() {
        let ws = vec![
            ShiftWeight::Pow {
                negative: true,
                m: 15,
            },
            ShiftWeight::Zero,
            ShiftWeight::Pow {
                negative: false,
                m: 0,
            },
            ShiftWeight::Pow {
                negative: false,
                m: 3,
            },
        ];
        // m = 15 uses the whole 5-bit range, so the zero needs a sixth bit.
        let p = PackedWeights::pack(&ws, 5).unwrap();
        assert_eq!(p.code_bits, 6);
        assert_eq!(p.unpack(), ws);
        assert_eq!(p.bytes.len(), 3);
        // Without m = 15 the zero fits the 5-bit codes.
        let ws2: Vec<_> = ws
            .iter()
            .map(|w| match w {
                ShiftWeight::Pow { negative, m: 15 } => ShiftWeight::Pow {
                    negative: *negative,
                    m: 14,
                },
                w => *w,
            })
            .collect();
        let p2 = PackedWeights::pack(&ws2, 5).unwrap();
        assert_eq!(p2.code_bits, 5);
        assert_eq!(p2.unpack(), ws2);
        assert!(PackedWeights::pack(&ws, 4).is_err());
        assert_eq!(ShiftWeight::from_f32(-0.25), Some(ws2[0].min_m(2)));
        assert_eq!(ShiftWeight::from_f32(0.3), None);
        assert_eq!(ShiftWeight::from_f32(2.0), None);
    }

    impl ShiftWeight {
        fn min_m(&self, m: u8) -> ShiftWeight {
            ShiftWeight::Pow { negative: true, m }
        }
    }

    #[test]
    fn plan_groups_by_shift_and_sign() {
        let w = |negative, m| ShiftWeight::Pow { negative, m };
        let ws = vec![w(false, 1), w(true, 1), ShiftWeight::Zero, w(false, 3)];
        let plan = Plan::new(&ws, 2, 2, 5);
        assert_eq!(plan.channel(0).len(), 1);
        let b = plan.channel(0)[0];
        assert_eq!((b.shift, b.mid - b.start, b.end - b.mid), (4, 1, 1));
        let b = plan.channel(1)[0];
        assert_eq!(
            (b.shift, &plan.idx[b.start as usize..b.end as usize]),
            (2, &[1u32][..])
        );
        assert_eq!(plan.nonzero, 3);
        assert_eq!(plan.max_bucket, 2);
    }
}
