//! Shift-and-accumulate kernels on one block of [`BLOCK`] positions.
//!
//! The input block is an im2col-style matrix `K x BLOCK` of 32-bit
//! activations. For every output channel and every bucket of its plan (the
//! inputs whose weight is `+2^-m` or `-2^-m`), the kernel adds the bucket's
//! rows in 32-bit lanes (vector adds and subtracts only), then shifts the
//! bucket's sum once into a 64-bit accumulator. The 32-bit sums are exact
//! because the engine checks, per layer and batch, that
//! `max|X| * largest bucket < 2^31`; otherwise it runs the 64-bit kernel,
//! which gives the same result. No multiplication of any kind runs here.

use crate::weights::Plan;
use std::ops::Range;

/// Positions per block (the lanes of 4 AVX-512 or 8 AVX2 registers).
pub const BLOCK: usize = 64;

/// The instruction set a kernel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust (what the compiler makes of it for the baseline target).
    Portable,
    /// x86-64 AVX2 intrinsics.
    Avx2,
    /// x86-64 AVX-512F intrinsics.
    Avx512,
}

impl Isa {
    /// The best instruction set this CPU has.
    pub fn detect() -> Isa {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|i| i.available())
            .unwrap_or(Isa::Portable)
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// Accumulates output channels `cs` of one block:
/// `acc[(c - cs.start) * BLOCK + j] = init[c] + sum_b shl(sum of bucket b at j, shift_b)`.
///
/// `col` is `K x BLOCK` with `K` the layer's fan-in; `wide` selects 64-bit
/// bucket sums. The caller guarantees `isa.available()`.
pub fn block_channels(
    isa: Isa,
    wide: bool,
    col: &[i32],
    plan: &Plan,
    cs: Range<usize>,
    init: &[i64],
    acc: &mut [i64],
) {
    let k = col.len() / BLOCK;
    assert!(col.len() == k * BLOCK && acc.len() >= cs.len() * BLOCK);
    // Plan::new only stores indices below its fan-in.
    assert_eq!(
        plan.fan_in, k,
        "block has {k} rows, the plan {}",
        plan.fan_in
    );
    if wide {
        return wide_body(col, plan, cs, init, acc);
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            assert!(isa.available());
            // SAFETY: the CPU has AVX-512F (checked above); every index in the
            // plan is below K, so every row read lies inside `col`.
            unsafe { narrow_avx512(col, plan, cs, init, acc) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(isa.available());
            // SAFETY: as above, with AVX2.
            unsafe { narrow_avx2(col, plan, cs, init, acc) }
        }
        _ => narrow_body(col, plan, cs, init, acc, sum_portable),
    }
}

#[inline(always)]
fn combine(a: &mut [i64], part: &[i32; BLOCK], shift: i32) {
    let a = &mut a[..BLOCK];
    if shift >= 0 {
        for j in 0..BLOCK {
            a[j] += i64::from(part[j]) << shift;
        }
    } else {
        let s = (-shift).min(63);
        for j in 0..BLOCK {
            a[j] += i64::from(part[j]) >> s;
        }
    }
}

#[inline(always)]
fn narrow_body(
    col: &[i32],
    plan: &Plan,
    cs: Range<usize>,
    init: &[i64],
    acc: &mut [i64],
    sum: impl Fn(&[i32], &[u32], &[u32], &mut [i32; BLOCK]),
) {
    let mut part = [0i32; BLOCK];
    for (ci, c) in cs.enumerate() {
        let a = &mut acc[ci * BLOCK..(ci + 1) * BLOCK];
        a.fill(init[c]);
        for b in plan.channel(c) {
            let pos = &plan.idx[b.start as usize..b.mid as usize];
            let neg = &plan.idx[b.mid as usize..b.end as usize];
            sum(col, pos, neg, &mut part);
            combine(a, &part, b.shift);
        }
    }
}

#[inline(always)]
fn sum_portable(col: &[i32], pos: &[u32], neg: &[u32], out: &mut [i32; BLOCK]) {
    out.fill(0);
    for &k in pos {
        let row = &col[k as usize * BLOCK..][..BLOCK];
        for j in 0..BLOCK {
            out[j] = out[j].wrapping_add(row[j]);
        }
    }
    for &k in neg {
        let row = &col[k as usize * BLOCK..][..BLOCK];
        for j in 0..BLOCK {
            out[j] = out[j].wrapping_sub(row[j]);
        }
    }
}

fn wide_body(col: &[i32], plan: &Plan, cs: Range<usize>, init: &[i64], acc: &mut [i64]) {
    let mut part = [0i64; BLOCK];
    for (ci, c) in cs.enumerate() {
        let a = &mut acc[ci * BLOCK..(ci + 1) * BLOCK];
        a.fill(init[c]);
        for b in plan.channel(c) {
            part.fill(0);
            for &k in &plan.idx[b.start as usize..b.mid as usize] {
                let row = &col[k as usize * BLOCK..][..BLOCK];
                for j in 0..BLOCK {
                    part[j] += i64::from(row[j]);
                }
            }
            for &k in &plan.idx[b.mid as usize..b.end as usize] {
                let row = &col[k as usize * BLOCK..][..BLOCK];
                for j in 0..BLOCK {
                    part[j] -= i64::from(row[j]);
                }
            }
            for j in 0..BLOCK {
                a[j] += crate::format::shl(part[j], b.shift);
            }
        }
    }
}

/// AVX-512: per output channel, the 64 bucket-sum lanes live in four
/// registers and the 64 accumulator lanes in eight, so a channel touches
/// memory only to read its input rows and to store its result.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn narrow_avx512(col: &[i32], plan: &Plan, cs: Range<usize>, init: &[i64], acc: &mut [i64]) {
    use std::arch::x86_64::*;
    let base = col.as_ptr();
    for (ci, c) in cs.enumerate() {
        let mut a = [_mm512_set1_epi64(init[c]); 8];
        for b in plan.channel(c) {
            let mut p = [_mm512_setzero_si512(); 4];
            for &k in &plan.idx[b.start as usize..b.mid as usize] {
                let row = base.add(k as usize * BLOCK);
                for (r, pr) in p.iter_mut().enumerate() {
                    *pr = _mm512_add_epi32(*pr, _mm512_loadu_si512(row.add(16 * r).cast()));
                }
            }
            for &k in &plan.idx[b.mid as usize..b.end as usize] {
                let row = base.add(k as usize * BLOCK);
                for (r, pr) in p.iter_mut().enumerate() {
                    *pr = _mm512_sub_epi32(*pr, _mm512_loadu_si512(row.add(16 * r).cast()));
                }
            }
            let n = _mm_cvtsi32_si128(b.shift.unsigned_abs().min(63) as i32);
            for (r, pr) in p.iter().enumerate() {
                let lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(*pr));
                let hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(*pr));
                let (lo, hi) = if b.shift >= 0 {
                    (_mm512_sll_epi64(lo, n), _mm512_sll_epi64(hi, n))
                } else {
                    (_mm512_sra_epi64(lo, n), _mm512_sra_epi64(hi, n))
                };
                a[2 * r] = _mm512_add_epi64(a[2 * r], lo);
                a[2 * r + 1] = _mm512_add_epi64(a[2 * r + 1], hi);
            }
        }
        let out = acc.as_mut_ptr().add(ci * BLOCK);
        for (r, ar) in a.iter().enumerate() {
            _mm512_storeu_si512(out.add(8 * r).cast(), *ar);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn narrow_avx2(col: &[i32], plan: &Plan, cs: Range<usize>, init: &[i64], acc: &mut [i64]) {
    // SAFETY (of the closure): forwarded from `block_channels`.
    narrow_body(col, plan, cs, init, acc, |c, p, n, o| unsafe {
        sum_avx2(c, p, n, o)
    })
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(col: &[i32], pos: &[u32], neg: &[u32], out: &mut [i32; BLOCK]) {
    use std::arch::x86_64::*;
    let base = col.as_ptr();
    let mut a = [_mm256_setzero_si256(); 8];
    for &k in pos {
        let p = base.add(k as usize * BLOCK);
        for (r, acc) in a.iter_mut().enumerate() {
            *acc = _mm256_add_epi32(*acc, _mm256_loadu_si256(p.add(8 * r).cast()));
        }
    }
    for &k in neg {
        let p = base.add(k as usize * BLOCK);
        for (r, acc) in a.iter_mut().enumerate() {
            *acc = _mm256_sub_epi32(*acc, _mm256_loadu_si256(p.add(8 * r).cast()));
        }
    }
    for (r, acc) in a.iter().enumerate() {
        _mm256_storeu_si256(out.as_mut_ptr().add(8 * r).cast(), *acc);
    }
}

/// Accumulators of one [`crate::weights::DenseShifts`] group for one image:
/// `out[l] = sum_k (x[k] << pos[k][l]) - (x[k] << neg[k][l])` (64-bit lanes,
/// counts of 64 or more add zero).
pub fn dense_group(isa: Isa, x: &[i32], pos: &[u8], neg: &[u8], out: &mut [i64; 8]) {
    assert!(pos.len() == x.len() * 8 && neg.len() == pos.len());
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        assert!(isa.available());
        // SAFETY: AVX-512F present; every read is inside `pos`/`neg` (checked length).
        unsafe { dense_group_avx512(x, pos, neg, out) };
        return;
    }
    let _ = isa;
    let mut p = [0i64; 8];
    let mut n = [0i64; 8];
    for (k, &xv) in x.iter().enumerate() {
        let xv = i64::from(xv);
        for l in 0..8 {
            let (cp, cn) = (pos[k * 8 + l], neg[k * 8 + l]);
            p[l] += if cp < 64 { xv << cp } else { 0 };
            n[l] += if cn < 64 { xv << cn } else { 0 };
        }
    }
    for l in 0..8 {
        out[l] = p[l] - n[l];
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dense_group_avx512(x: &[i32], pos: &[u8], neg: &[u8], out: &mut [i64; 8]) {
    use std::arch::x86_64::*;
    let (mut p, mut n) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    for (k, &xv) in x.iter().enumerate() {
        let v = _mm512_set1_epi64(i64::from(xv));
        let cp = _mm512_cvtepu8_epi64(_mm_loadl_epi64(pos.as_ptr().add(k * 8).cast()));
        let cn = _mm512_cvtepu8_epi64(_mm_loadl_epi64(neg.as_ptr().add(k * 8).cast()));
        // vpsllvq gives 0 for counts of 64 or more.
        p = _mm512_add_epi64(p, _mm512_sllv_epi64(v, cp));
        n = _mm512_add_epi64(n, _mm512_sllv_epi64(v, cn));
    }
    _mm512_storeu_si512(out.as_mut_ptr().cast(), _mm512_sub_epi64(p, n));
}
