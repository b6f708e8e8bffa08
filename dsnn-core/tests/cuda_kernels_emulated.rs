//! dsnn's CUDA kernels (`kernels/dsnn_ops.cu`) compiled as host C++ under a
//! small CUDA emulation (`kernels/emu/`) and compared with the CPU path.
//!
//! This checks the kernels' arithmetic and index calculations on machines
//! without a GPU: every kernel, with the launch arguments `src/cuda.rs`
//! passes, against the CPU op it mirrors. The cuBLAS products between the
//! convolution kernels are done here by a plain host loop with the layouts
//! `src/cuda.rs` gives candle's matmul. What it cannot check: the PTX itself,
//! the launch plumbing through cudarc, candle's cuBLAS call (gpu_check does,
//! on a GPU). Skipped, with a message, when no C++20 compiler is found.

use candle_core::{Device, Tensor, Var};
use dsnn_core::batchnorm::BatchNormTrain;
use dsnn_core::conv::{conv2d, conv2d_grouped, conv2d_with, ConvGeometry, ConvOptions};
use dsnn_core::pool::{max_pool, PoolWindow};
use dsnn_core::quant::{
    clamp_abs, pow2, q_shift_range, FixedPoint, PsWeight, QuantizeActivation, QuantizeWeightQ,
    RandomStream, Rounding,
};
use dsnn_kernel_build::{shared_emulation, Emulation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

type F32p = *const f32;
type F32m = *mut f32;

/// The kernels as host C++, built once for all tests of this file (None:
/// no compiler). Every `unsafe { emu.kernel(..) }` below is safe because
/// its binding names the wrapper's exact C signature (`kernels/emu/launch.cpp`).
fn emu() -> Option<&'static Emulation> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kernels/emu/launch.cpp");
    shared_emulation(&src, "dsnn_core_emu")
}

/// A grid-stride launch as `src/cuda.rs` makes it, with fewer blocks (the
/// kernels loop over the rest; one block of 64 threads keeps the test fast).
const G: (u32, u32) = (2, 64);
/// The reduction kernels' block size (fixed by the kernels).
const RED: u32 = 256;

fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn cpu(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec(), &Device::Cpu).unwrap()
}

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn assert_exact(name: &str, got: &[f32], want: &[f32], allowed: usize) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| got[i].to_bits() != want[i].to_bits() && got[i] != want[i])
        .collect();
    assert!(
        bad.len() <= allowed,
        "{name}: {} of {} differ, first at {}: got {} want {}",
        bad.len(),
        got.len(),
        bad[0],
        got[bad[0]],
        want[bad[0]]
    );
}

fn assert_rel(name: &str, got: &[f32], want: &[f32], bound: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
    let err = got.iter().zip(want).fold(0f64, |m, (&a, &b)| {
        m.max((f64::from(a) - f64::from(b)).abs())
    });
    assert!(
        err <= bound * scale.max(1e-30),
        "{name}: max error {err:e} against scale {scale:e} (bound {bound:e} relative)"
    );
}

/// Gradients of `sum(f(inputs)[0] * r)` on the CPU, with r fixed.
fn cpu_grads(
    inputs: &[Tensor],
    r: &[f32],
    f: impl Fn(&[Tensor]) -> Tensor,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let rt = cpu(r, y.dims());
    let grads = (&y * rt).unwrap().sum_all().unwrap().backward().unwrap();
    let gs = ts.iter().map(|t| vec(grads.get(t).unwrap())).collect();
    (vec(&y), gs)
}

/// Row-major `c (b x m x n) = a_b (m x k) * b_b (k x n)` with element
/// accessors, as candle's batched matmul computes it.
fn gemm(
    b: usize,
    m: usize,
    n: usize,
    k: usize,
    a: impl Fn(usize, usize, usize) -> f32,
    bm: impl Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    let mut c = vec![0f32; b * m * n];
    for z in 0..b {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f32;
                for l in 0..k {
                    acc += a(z, i, l) * bm(z, l, j);
                }
                c[(z * m + i) * n + j] = acc;
            }
        }
    }
    c
}

#[test]
fn quantisers_match_the_cpu_bit_for_bit() {
    let Some(emu) = emu() else { return };
    let mut rng = StdRng::seed_from_u64(3);
    let n = 20_011usize;
    let mut x = uniform(&mut rng, n, -40_000.0, 40_000.0);
    x[..500].copy_from_slice(&uniform(&mut rng, 500, -1.0, 1.0));
    x[500] = -0.0;
    let round: extern "C" fn(u32, u32, u32, F32p, F32m, i32, f32, f32, f32) =
        unsafe { emu.kernel("dsnn_round_to_fixed") };
    for (ib, fb) in [(16u32, 16u32), (4, 4), (1, 8), (8, 3)] {
        let want = vec(&cpu(&x, &[n])
            .apply_op1(QuantizeActivation(FixedPoint {
                integer_bits: ib,
                fraction_bits: fb,
            }))
            .unwrap());
        let mut got = vec![f32::NAN; n];
        // The constants src/cuda.rs passes.
        round(
            G.0,
            G.1,
            n as u32,
            x.as_ptr(),
            got.as_mut_ptr(),
            i32::from(ib == 1),
            pow2(fb as f32),
            pow2(-(fb as f32)),
            pow2(ib.max(1) as f32 - 1.0),
        );
        assert_exact(&format!("round_to_fixed({ib},{fb})"), &got, &want, 0);
    }

    let mut w = uniform(&mut rng, n, -1.5, 1.5);
    w[..400].copy_from_slice(&uniform(&mut rng, 400, -1e-4, 1e-4));
    w[400] = 0.0;
    for (i, v) in w[401..440].iter_mut().enumerate() {
        *v = -(2f32.powi(-(i as i32)));
    }
    let q: extern "C" fn(u32, u32, u32, F32p, F32m, i32, i32, u64, u64) =
        unsafe { emu.kernel("dsnn_quantize_q") };
    for (bits, rounding) in [
        (5u32, Rounding::Deterministic),
        (8, Rounding::Deterministic),
        (5, Rounding::Stochastic),
        (2, Rounding::Stochastic),
    ] {
        let stream = RandomStream { seed: 42, step: 9 };
        let op = QuantizeWeightQ {
            weight_bits: bits,
            rounding,
            stream,
        };
        let want = vec(&cpu(&w, &[n]).apply_op1(op).unwrap());
        let mut got = vec![f32::NAN; n];
        q(
            G.0,
            G.1,
            n as u32,
            w.as_ptr(),
            got.as_mut_ptr(),
            q_shift_range(bits).0,
            i32::from(rounding == Rounding::Stochastic),
            stream.seed,
            stream.step,
        );
        // The kernel's log is correctly rounded; the CPU's logf is too in
        // all but rare cases, which could move a value across a boundary.
        assert_exact(
            &format!("quantize_q({bits},{rounding})"),
            &got,
            &want,
            n / 10_000,
        );
    }

    let shift = uniform(&mut rng, n, -20.0, 2.0);
    let sign = uniform(&mut rng, n, -1.5, 1.5);
    let ps: extern "C" fn(u32, u32, u32, F32p, F32p, F32m, i32, i32, i32, u64, u64) =
        unsafe { emu.kernel("dsnn_ps_weight") };
    for (bits, rounding) in [(5u32, Rounding::Deterministic), (4, Rounding::Stochastic)] {
        let stream = RandomStream { seed: 5, step: 77 };
        let op = PsWeight {
            weight_bits: bits,
            rounding,
            stream,
        };
        let want = vec(&cpu(&shift, &[n]).apply_op2(&cpu(&sign, &[n]), op).unwrap());
        let (lo, hi) = dsnn_core::quant::ps_shift_range(bits);
        let mut got = vec![f32::NAN; n];
        ps(
            G.0,
            G.1,
            n as u32,
            shift.as_ptr(),
            sign.as_ptr(),
            got.as_mut_ptr(),
            lo,
            hi,
            i32::from(rounding == Rounding::Stochastic),
            stream.seed,
            stream.step,
        );
        assert_exact(&format!("ps_weight({bits},{rounding})"), &got, &want, 0);
    }

    let ca: extern "C" fn(u32, u32, u32, F32m, i32) = unsafe { emu.kernel("dsnn_clamp_abs") };
    let mut got = w.clone();
    ca(G.0, G.1, n as u32, got.as_mut_ptr(), -15);
    let want: Vec<f32> = w.iter().map(|&v| clamp_abs(v, -15)).collect();
    assert_exact("clamp_abs", &got, &want, 0);
}

#[test]
fn convolution_kernels_and_layouts_match_the_cpu() {
    let Some(emu) = emu() else { return };
    type Im2col = extern "C" fn(
        u32,
        u32,
        u32,
        F32p,
        F32m,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
    );
    type Col2im =
        extern "C" fn(u32, u32, u32, F32p, F32m, u32, u32, u32, u32, u32, u32, u32, u32, u32);
    type Swap = extern "C" fn(u32, u32, u32, F32p, F32m, u32, u32, u32);
    let im2col: Im2col = unsafe { emu.kernel("dsnn_im2col") };
    let col2im: Col2im = unsafe { emu.kernel("dsnn_col2im") };
    let swap: Swap = unsafe { emu.kernel("dsnn_swap01") };
    let mut rng = StdRng::seed_from_u64(8);
    for (n, cin, h, cout, kk, stride, pad) in [
        (3usize, 3usize, 10usize, 4usize, 3usize, 1usize, 1usize),
        (2, 4, 9, 5, 3, 2, 1),
        (2, 1, 12, 3, 5, 1, 0),
        (3, 4, 8, 6, 1, 2, 0),
        (2, 3, 7, 2, 3, 2, 2),
    ] {
        let name = format!("conv n{n} {cin}->{cout} {h}x{h} k{kk} s{stride} p{pad}");
        let x = uniform(&mut rng, n * cin * h * h, -2.0, 2.0);
        let w = uniform(&mut rng, cout * cin * kk * kk, -0.5, 0.5);
        let g = ConvGeometry {
            stride,
            padding: pad,
        };
        let ho = (h + 2 * pad - kk) / stride + 1;
        let (k, p) = (cin * kk * kk, ho * ho);
        let r = uniform(&mut rng, n * cout * p, -1.0, 1.0);
        let (y_cpu, grads) = cpu_grads(
            &[cpu(&x, &[n, cin, h, h]), cpu(&w, &[cout, cin, kk, kk])],
            &r,
            |t| conv2d(&t[0], &t[1], g).unwrap(),
        );
        let dims = [cin, h, h, kk, kk, ho, ho, stride, pad].map(|v| v as u32);
        let im = |strides: (usize, usize)| {
            let mut col = vec![f32::NAN; n * k * p];
            im2col(
                G.0,
                G.1,
                (n * k * p) as u32,
                x.as_ptr(),
                col.as_mut_ptr(),
                dims[0],
                dims[1],
                dims[2],
                dims[3],
                dims[4],
                dims[5],
                dims[6],
                dims[7],
                dims[8],
                strides.0 as u32,
                strides.1 as u32,
            );
            col
        };
        // Forward: W (batch stride 0) times col as batch x k x p.
        let col = im((k * p, p));
        let y = gemm(
            n,
            cout,
            p,
            k,
            |_, i, l| w[i * k + l],
            |z, l, j| col[(z * k + l) * p + j],
        );
        assert_rel(&format!("{name} forward"), &y, &y_cpu, 1e-5);
        // Input gradient: W^T dy per sample, then col2im.
        let colg = gemm(
            n,
            k,
            p,
            cout,
            |_, i, l| w[l * k + i],
            |z, l, j| r[(z * cout + l) * p + j],
        );
        let mut dx = vec![f32::NAN; n * cin * h * h];
        col2im(
            G.0,
            G.1,
            dx.len() as u32,
            colg.as_ptr(),
            dx.as_mut_ptr(),
            dims[0],
            dims[1],
            dims[2],
            dims[3],
            dims[4],
            dims[5],
            dims[6],
            dims[7],
            dims[8],
        );
        assert_rel(&format!("{name} input gradient"), &dx, &grads[0], 1e-5);
        // Weight gradient: dy as cout x (n*p) times col (k x n*p) transposed.
        let np = n * p;
        let colk = im((p, np));
        let mut dyt = vec![f32::NAN; r.len()];
        swap(
            G.0,
            G.1,
            r.len() as u32,
            r.as_ptr(),
            dyt.as_mut_ptr(),
            n as u32,
            cout as u32,
            p as u32,
        );
        let dw = gemm(
            1,
            cout,
            k,
            np,
            |_, i, l| dyt[i * np + l],
            |_, l, j| colk[j * np + l],
        );
        assert_rel(&format!("{name} weight gradient"), &dw, &grads[1], 1e-5);
    }
}

/// The sizes of one grouped convolution of the tests (square kernel).
struct GroupedCase {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
}

impl GroupedCase {
    fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.stride + 1,
            (self.w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }
    /// The kernels' shared trailing arguments, as `src/cuda/grouped_conv.rs`
    /// passes them (cin, h, w, cout, kh, kw, ho, wo, stride, pad, groups).
    fn args(&self) -> [u32; 11] {
        let (ho, wo) = self.out_hw();
        [
            self.cin,
            self.h,
            self.w,
            self.cout,
            self.k,
            self.k,
            ho,
            wo,
            self.stride,
            self.pad,
            self.groups,
        ]
        .map(|v| v as u32)
    }
    fn name(&self) -> String {
        format!(
            "grouped conv n{} {}->{} {}x{} k{} s{} p{} groups {}",
            self.n, self.cin, self.cout, self.h, self.w, self.k, self.stride, self.pad, self.groups
        )
    }
}

type GConv = extern "C" fn(
    u32,
    u32,
    u32,
    F32p,
    F32p,
    F32m,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
);
type GConvW = extern "C" fn(
    u32,
    u32,
    u32,
    F32p,
    F32p,
    F32m,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
    u32,
);

/// The three grouped-convolution kernels on `x`, `w` and the output
/// gradient `r`: (y, dx, dw). The weight gradient runs on `weight_blocks`
/// blocks of the reduction size (src/cuda.rs: one per weight element, at
/// most 2^16; fewer make the kernel stride over the rest).
fn grouped_kernels(
    emu: &Emulation,
    c: &GroupedCase,
    x: &[f32],
    w: &[f32],
    r: &[f32],
    weight_blocks: u32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let fwd: GConv = unsafe { emu.kernel("dsnn_conv_grouped") };
    let bwd_in: GConv = unsafe { emu.kernel("dsnn_conv_grouped_bwd_input") };
    let bwd_w: GConvW = unsafe { emu.kernel("dsnn_conv_grouped_bwd_weight") };
    let a = c.args();
    let mut y = vec![f32::NAN; r.len()];
    fwd(
        G.0,
        G.1,
        y.len() as u32,
        x.as_ptr(),
        w.as_ptr(),
        y.as_mut_ptr(),
        a[0],
        a[1],
        a[2],
        a[3],
        a[4],
        a[5],
        a[6],
        a[7],
        a[8],
        a[9],
        a[10],
    );
    let mut dx = vec![f32::NAN; x.len()];
    bwd_in(
        G.0,
        G.1,
        dx.len() as u32,
        r.as_ptr(),
        w.as_ptr(),
        dx.as_mut_ptr(),
        a[0],
        a[1],
        a[2],
        a[3],
        a[4],
        a[5],
        a[6],
        a[7],
        a[8],
        a[9],
        a[10],
    );
    let mut dw = vec![f32::NAN; w.len()];
    bwd_w(
        weight_blocks,
        RED,
        dw.len() as u32,
        x.as_ptr(),
        r.as_ptr(),
        dw.as_mut_ptr(),
        c.n as u32,
        a[0],
        a[1],
        a[2],
        a[3],
        a[4],
        a[5],
        a[6],
        a[7],
        a[8],
        a[9],
        a[10],
    );
    (y, dx, dw)
}

#[test]
fn grouped_and_depthwise_convolution_kernels_match_the_cpu() {
    let Some(emu) = emu() else { return };
    let mut rng = StdRng::seed_from_u64(21);
    let cases = [
        // Depthwise (groups = channels), MobileNetV2's 3x3 stride 1 and 2.
        (2, 6, 9, 7, 6, 3, 1, 1, 6),
        (3, 5, 8, 11, 5, 3, 2, 1, 5),
        // Depthwise with a channel multiplier of 2.
        (2, 4, 7, 7, 8, 3, 1, 1, 4),
        // Two groups of several channels, odd sizes, no padding and wide padding.
        (2, 4, 9, 7, 6, 3, 1, 0, 2),
        (2, 6, 10, 9, 4, 5, 2, 2, 2),
        (3, 6, 5, 6, 9, 1, 1, 0, 3),
    ];
    for (i, &(n, cin, h, w, cout, k, stride, pad, groups)) in cases.iter().enumerate() {
        let c = GroupedCase {
            n,
            cin,
            h,
            w,
            cout,
            k,
            stride,
            pad,
            groups,
        };
        let (ho, wo) = c.out_hw();
        let x = uniform(&mut rng, n * cin * h * w, -2.0, 2.0);
        let wt = uniform(&mut rng, cout * (cin / groups) * k * k, -0.5, 0.5);
        let r = uniform(&mut rng, n * cout * ho * wo, -1.0, 1.0);
        let geometry = ConvGeometry {
            stride,
            padding: pad,
        };
        let (y_cpu, grads) = cpu_grads(
            &[
                cpu(&x, &[n, cin, h, w]),
                cpu(&wt, &[cout, cin / groups, k, k]),
            ],
            &r,
            |t| conv2d_grouped(&t[0], &t[1], geometry, groups).unwrap(),
        );
        // As src/cuda/grouped_conv.rs launches it for the first case; the
        // others use fewer blocks, which the kernel strides over.
        let blocks = if i == 0 { wt.len() as u32 } else { 7 };
        let (y, dx, dw) = grouped_kernels(emu, &c, &x, &wt, &r, blocks);
        let name = c.name();
        assert_rel(&format!("{name} forward"), &y, &y_cpu, 1e-5);
        assert_rel(&format!("{name} input gradient"), &dx, &grads[0], 1e-5);
        assert_rel(&format!("{name} weight gradient"), &dw, &grads[1], 1e-5);
    }
}

/// A shift layer's depthwise convolution as the CUDA path runs it: the
/// input rounded to fixed point by `dsnn_round_to_fixed`, then the grouped
/// kernels with power-of-two weights, against the CPU's convolution with
/// the rounding fused into its unfolding. The products and their sums are
/// exact on this grid, so the forward must agree bit for bit.
#[test]
fn depthwise_shift_convolution_rounds_its_input_as_the_cpu_does() {
    let Some(emu) = emu() else { return };
    let round: extern "C" fn(u32, u32, u32, F32p, F32m, i32, f32, f32, f32) =
        unsafe { emu.kernel("dsnn_round_to_fixed") };
    let mut rng = StdRng::seed_from_u64(22);
    let c = GroupedCase {
        n: 2,
        cin: 8,
        h: 9,
        w: 10,
        cout: 8,
        k: 3,
        stride: 2,
        pad: 1,
        groups: 8,
    };
    let (ho, wo) = c.out_hw();
    let fp = FixedPoint {
        integer_bits: 4,
        fraction_bits: 4,
    };
    let x = uniform(&mut rng, c.n * c.cin * c.h * c.w, -9.0, 9.0);
    let wt: Vec<f32> = (0..c.cout * c.k * c.k)
        .map(|_| {
            let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            sign * pow2(-(rng.random_range(0..6) as f32))
        })
        .collect();
    let r = uniform(&mut rng, c.n * c.cout * ho * wo, -1.0, 1.0);
    let options = ConvOptions {
        geometry: ConvGeometry {
            stride: c.stride,
            padding: c.pad,
        },
        groups: c.groups,
        input_quant: Some(fp),
    };
    let (y_cpu, grads) = cpu_grads(
        &[
            cpu(&x, &[c.n, c.cin, c.h, c.w]),
            cpu(&wt, &[c.cout, 1, c.k, c.k]),
        ],
        &r,
        |t| conv2d_with(&t[0], &t[1], options).unwrap(),
    );
    let mut xq = vec![f32::NAN; x.len()];
    round(
        G.0,
        G.1,
        x.len() as u32,
        x.as_ptr(),
        xq.as_mut_ptr(),
        0,
        pow2(4.0),
        pow2(-4.0),
        pow2(3.0),
    );
    let (y, dx, dw) = grouped_kernels(emu, &c, &xq, &wt, &r, 7);
    assert_exact("depthwise shift conv forward", &y, &y_cpu, 0);
    // The rounding passes the gradient straight through to the input.
    assert_rel("depthwise shift conv input gradient", &dx, &grads[0], 1e-5);
    assert_rel("depthwise shift conv weight gradient", &dw, &grads[1], 1e-5);
}

type PoolK = extern "C" fn(u32, u32, u32, F32p, F32m, u32, u32, u32, u32, u32, u32, u32);
type PoolArgK = extern "C" fn(u32, u32, u32, F32p, *mut u32, u32, u32, u32, u32, u32, u32, u32);
type PoolBwdK =
    extern "C" fn(u32, u32, u32, *const u32, F32p, F32m, u32, u32, u32, u32, u32, u32, u32);

#[test]
fn max_pool_kernels_match_the_cpu_bit_for_bit() {
    let Some(emu) = emu() else { return };
    let pool: PoolK = unsafe { emu.kernel("dsnn_max_pool") };
    let argmax: PoolArgK = unsafe { emu.kernel("dsnn_max_pool_argmax") };
    let pool_bwd: PoolBwdK = unsafe { emu.kernel("dsnn_max_pool_bwd") };
    let mut rng = StdRng::seed_from_u64(23);
    // (n, c, h, w, kernel, stride, padding, values): GoogLeNet's 3x3/1/1
    // and 3x3/2/1, the 2x2/2 of the other networks (odd sizes drop a row),
    // a 3x3/2 without padding, a 5x5/3/2; values from {0, 1, 2} make ties
    // frequent, and one case has NaNs and minus infinities.
    #[derive(Debug)]
    enum Values {
        Uniform,
        Ties,
        Special,
    }
    let cases = [
        (2, 3, 7, 9, 3, 1, 1, Values::Uniform),
        (2, 3, 7, 9, 3, 1, 1, Values::Ties),
        (2, 3, 8, 11, 3, 2, 1, Values::Ties),
        (2, 2, 7, 6, 2, 2, 0, Values::Ties),
        (1, 4, 9, 9, 3, 2, 0, Values::Uniform),
        (2, 2, 10, 8, 5, 3, 2, Values::Ties),
        (2, 3, 6, 7, 3, 1, 1, Values::Special),
    ];
    for (n, c, h, w, kernel, stride, padding, values) in cases {
        let window = PoolWindow {
            kernel,
            stride,
            padding,
        };
        let (ho, wo) = (
            window.output_side(h).unwrap(),
            window.output_side(w).unwrap(),
        );
        let numel = n * c * h * w;
        let x: Vec<f32> = match values {
            Values::Uniform => uniform(&mut rng, numel, -1.0, 1.0),
            Values::Ties => (0..numel).map(|_| rng.random_range(0..3) as f32).collect(),
            Values::Special => (0..numel)
                .map(|_| match rng.random_range(0..10) {
                    0 => f32::NAN,
                    1..=3 => f32::NEG_INFINITY,
                    v => v as f32,
                })
                .collect(),
        };
        let out_n = n * c * ho * wo;
        let r = uniform(&mut rng, out_n, -1.0, 1.0);
        let (y_cpu, g) = cpu_grads(&[cpu(&x, &[n, c, h, w])], &r, |t| {
            max_pool(&t[0], window).unwrap()
        });
        let name = format!(
            "max pool {kernel}x{kernel}/{stride}/{padding} on {n}x{c}x{h}x{w} ({values:?} values)"
        );
        let dims = [h, w, ho, wo, kernel, stride, padding].map(|v| v as u32);
        let mut y = vec![0f32; out_n];
        pool(
            G.0,
            G.1,
            out_n as u32,
            x.as_ptr(),
            y.as_mut_ptr(),
            dims[0],
            dims[1],
            dims[2],
            dims[3],
            dims[4],
            dims[5],
            dims[6],
        );
        assert_exact(&name, &y, &y_cpu, 0);
        let mut arg = vec![u32::MAX; out_n];
        argmax(
            G.0,
            G.1,
            out_n as u32,
            x.as_ptr(),
            arg.as_mut_ptr(),
            dims[0],
            dims[1],
            dims[2],
            dims[3],
            dims[4],
            dims[5],
            dims[6],
        );
        let mut dx = vec![f32::NAN; numel];
        pool_bwd(
            G.0,
            G.1,
            numel as u32,
            arg.as_ptr(),
            r.as_ptr(),
            dx.as_mut_ptr(),
            dims[0],
            dims[1],
            dims[2],
            dims[3],
            dims[4],
            dims[5],
            dims[6],
        );
        assert_exact(&format!("{name} backward"), &dx, &g[0], 0);
    }
}

#[test]
fn batch_norm_kernels_match_the_cpu() {
    let Some(emu) = emu() else { return };
    type Stats = extern "C" fn(u32, u32, F32p, F32p, F32p, F32m, u32, u32, u32, f32);
    type Apply = extern "C" fn(u32, u32, u32, F32p, F32p, F32m, u32, u32, i32);
    type BStats = extern "C" fn(u32, u32, F32p, F32p, F32p, F32m, F32m, u32, u32, u32, f32);
    type BApply = extern "C" fn(u32, u32, u32, F32p, F32p, F32p, F32m, u32, u32);
    let stats_k: Stats = unsafe { emu.kernel("dsnn_bn_stats") };
    let apply_k: Apply = unsafe { emu.kernel("dsnn_bn_apply") };
    let bstats_k: BStats = unsafe { emu.kernel("dsnn_bn_bwd_stats") };
    let bapply_k: BApply = unsafe { emu.kernel("dsnn_bn_bwd_apply") };
    type Relub = extern "C" fn(u32, u32, u32, F32p, F32p, F32m);
    let relu_bwd: Relub = unsafe { emu.kernel("dsnn_relu_bwd") };
    let mut rng = StdRng::seed_from_u64(11);
    for (shape, relu) in [
        (vec![6usize, 5, 7, 3], false),
        (vec![6, 5, 7, 3], true),
        (vec![9, 4], false),
    ] {
        let (n, c) = (shape[0], shape[1]);
        let hw: usize = shape[2..].iter().product();
        let numel = n * c * hw;
        let x = uniform(&mut rng, numel, -3.0, 5.0);
        let gamma = uniform(&mut rng, c, 0.5, 1.5);
        let beta = uniform(&mut rng, c, -0.5, 0.5);
        let r = uniform(&mut rng, numel, -1.0, 1.0);
        let stats = Arc::new(Mutex::new(None));
        let s2 = stats.clone();
        let (y_cpu, grads) = cpu_grads(
            &[cpu(&x, &shape), cpu(&gamma, &[c]), cpu(&beta, &[c])],
            &r,
            |t| {
                t[0].apply_op3(
                    &t[1],
                    &t[2],
                    BatchNormTrain {
                        eps: 1e-5,
                        stats: s2.clone(),
                        relu,
                    },
                )
                .unwrap()
            },
        );
        let name = format!("batch norm {shape:?} relu={relu}");
        let mut st = vec![f32::NAN; 4 * c];
        stats_k(
            c as u32,
            RED,
            x.as_ptr(),
            gamma.as_ptr(),
            beta.as_ptr(),
            st.as_mut_ptr(),
            n as u32,
            c as u32,
            hw as u32,
            1e-5,
        );
        let (mean, var) = stats.lock().unwrap().take().unwrap();
        let (mean, var) = (vec(&mean), vec(&var));
        assert_rel(&format!("{name} mean"), &st[..c], &mean, 1e-6);
        assert_rel(&format!("{name} var"), &st[c..2 * c], &var, 1e-6);
        let mut y = vec![f32::NAN; numel];
        apply_k(
            G.0,
            G.1,
            numel as u32,
            x.as_ptr(),
            st.as_ptr(),
            y.as_mut_ptr(),
            c as u32,
            hw as u32,
            i32::from(relu),
        );
        assert_rel(&format!("{name} forward"), &y, &y_cpu, 1e-5);
        // Backward: the fused ReLU's mask first (as the op's bwd), then the kernels.
        let mut dy = r.clone();
        if relu {
            relu_bwd(
                G.0,
                G.1,
                numel as u32,
                r.as_ptr(),
                y.as_ptr(),
                dy.as_mut_ptr(),
            );
        }
        let mut out = vec![f32::NAN; numel + 2 * c];
        let mut coef = vec![f32::NAN; 5 * c];
        bstats_k(
            c as u32,
            RED,
            x.as_ptr(),
            gamma.as_ptr(),
            dy.as_ptr(),
            out.as_mut_ptr(),
            coef.as_mut_ptr(),
            n as u32,
            c as u32,
            hw as u32,
            1e-5,
        );
        bapply_k(
            G.0,
            G.1,
            numel as u32,
            x.as_ptr(),
            dy.as_ptr(),
            coef.as_ptr(),
            out.as_mut_ptr(),
            c as u32,
            hw as u32,
        );
        assert_rel(&format!("{name} dx"), &out[..numel], &grads[0], 1e-4);
        assert_rel(
            &format!("{name} dgamma"),
            &out[numel..numel + c],
            &grads[1],
            1e-5,
        );
        assert_rel(&format!("{name} dbeta"), &out[numel + c..], &grads[2], 1e-5);
    }
}

#[test]
fn small_ops_match_the_cpu() {
    let Some(emu) = emu() else { return };
    let mut rng = StdRng::seed_from_u64(5);
    let shape = [3usize, 4, 7, 9];
    let (n, c, hw) = (3usize, 4usize, 63usize);
    let numel = n * c * hw;
    let a = uniform(&mut rng, numel, -1.0, 1.0);
    let b = uniform(&mut rng, numel, -1.0, 1.0);
    let bias = uniform(&mut rng, c, -1.0, 1.0);
    let r = uniform(&mut rng, numel, -1.0, 1.0);
    type Map1 = extern "C" fn(u32, u32, u32, F32p, F32m);
    type Map2 = extern "C" fn(u32, u32, u32, F32p, F32p, F32m);
    let relu: Map1 = unsafe { emu.kernel("dsnn_relu") };
    let relu_bwd: Map2 = unsafe { emu.kernel("dsnn_relu_bwd") };
    let add_relu: Map2 = unsafe { emu.kernel("dsnn_add_relu") };
    let (y_cpu, g) = cpu_grads(&[cpu(&a, &shape)], &r, |t| {
        dsnn_core::ops::relu(&t[0]).unwrap()
    });
    let mut y = vec![f32::NAN; numel];
    relu(G.0, G.1, numel as u32, a.as_ptr(), y.as_mut_ptr());
    assert_exact("relu", &y, &y_cpu, 0);
    let mut dx = vec![f32::NAN; numel];
    relu_bwd(
        G.0,
        G.1,
        numel as u32,
        r.as_ptr(),
        y.as_ptr(),
        dx.as_mut_ptr(),
    );
    assert_exact("relu backward", &dx, &g[0], 0);
    let (y_cpu, _) = cpu_grads(&[cpu(&a, &shape), cpu(&b, &shape)], &r, |t| {
        dsnn_core::ops::add_relu(&t[0], &t[1]).unwrap()
    });
    add_relu(
        G.0,
        G.1,
        numel as u32,
        a.as_ptr(),
        b.as_ptr(),
        y.as_mut_ptr(),
    );
    assert_exact("add_relu", &y, &y_cpu, 0);

    type Bias = extern "C" fn(u32, u32, u32, F32p, F32p, F32m, u32, u32);
    type Csum = extern "C" fn(u32, u32, F32p, F32m, u32, u32, u32);
    let add_bias: Bias = unsafe { emu.kernel("dsnn_add_channel_bias") };
    let csum: Csum = unsafe { emu.kernel("dsnn_channel_sum") };
    let (y_cpu, g) = cpu_grads(&[cpu(&a, &shape), cpu(&bias, &[c])], &r, |t| {
        dsnn_core::ops::add_channel_bias(&t[0], &t[1]).unwrap()
    });
    add_bias(
        G.0,
        G.1,
        numel as u32,
        a.as_ptr(),
        bias.as_ptr(),
        y.as_mut_ptr(),
        c as u32,
        hw as u32,
    );
    assert_exact("add_channel_bias", &y, &y_cpu, 0);
    let mut db = vec![f32::NAN; c];
    csum(
        c as u32,
        RED,
        r.as_ptr(),
        db.as_mut_ptr(),
        n as u32,
        c as u32,
        hw as u32,
    );
    assert_rel("channel sum (bias gradient)", &db, &g[1], 1e-6);

    type Pool = extern "C" fn(u32, u32, u32, F32p, F32m, u32, u32, u32, u32);
    type PoolB = extern "C" fn(u32, u32, u32, F32p, F32p, F32m, u32, u32, u32, u32);
    let pool: Pool = unsafe { emu.kernel("dsnn_max_pool2x2") };
    let pool_b: PoolB = unsafe { emu.kernel("dsnn_max_pool2x2_bwd") };
    let (ho, wo) = (shape[2] / 2, shape[3] / 2);
    let out_n = n * c * ho * wo;
    let rp = uniform(&mut rng, out_n, -1.0, 1.0);
    let (y_cpu, g) = cpu_grads(&[cpu(&a, &shape)], &rp, |t| {
        dsnn_core::ops::max_pool2x2(&t[0]).unwrap()
    });
    let mut y = vec![f32::NAN; out_n];
    pool(
        G.0,
        G.1,
        out_n as u32,
        a.as_ptr(),
        y.as_mut_ptr(),
        7,
        9,
        ho as u32,
        wo as u32,
    );
    assert_exact("max_pool2x2", &y, &y_cpu, 0);
    let mut dx = vec![0f32; numel]; // src/cuda.rs allocates it zeroed
    pool_b(
        G.0,
        G.1,
        out_n as u32,
        a.as_ptr(),
        rp.as_ptr(),
        dx.as_mut_ptr(),
        7,
        9,
        ho as u32,
        wo as u32,
    );
    assert_exact("max_pool2x2 backward", &dx, &g[0], 0);
}

/// The scalars `optim::update` hands a `dsnn_opt_*` kernel at step `t`
/// (1-based) of `kind`: (kernel, [c0, c1, c2], flags, state buffers).
fn optimizer_kernel(
    kind: dsnn_core::optim::OptimizerKind,
    t: u64,
    momentum: f32,
) -> (&'static str, [f32; 3], i32, usize) {
    use dsnn_core::optim::OptimizerKind as K;
    let (b1, b2) = (0.9f32, 0.999f32);
    let ti = t as i32;
    let (bc1, bc2) = (1.0 - b1.powi(ti), 1.0 - b2.powi(ti));
    match kind {
        K::SGD => ("dsnn_opt_sgd", [momentum, 0.0, 0.0], i32::from(t == 1), 1),
        K::Adam => ("dsnn_opt_adam", [bc1, bc2, 0.0], 0, 2),
        K::Adagrad => ("dsnn_opt_adagrad", [0.0; 3], 0, 1),
        K::Adadelta => ("dsnn_opt_adadelta", [0.0; 3], 0, 2),
        K::RMSprop => ("dsnn_opt_rmsprop", [momentum, 0.0, 0.0], 0, 2),
        K::RAdam | K::Ranger => {
            let b2t = b2.powi(ti);
            let rho_inf = 2.0 / (1.0 - b2) - 1.0;
            let rho_t = rho_inf - 2.0 * t as f32 * b2t / (1.0 - b2t);
            let (mut flags, mut c) = (0, [bc1, 0.0, 0.0]);
            if rho_t > 5.0 {
                flags |= 1;
                c[1] = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                    / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                    .sqrt();
                c[2] = (1.0 - b2t).sqrt();
            }
            let ranger = kind == K::Ranger;
            if ranger && t == 1 {
                flags |= 2;
            }
            if ranger && t.is_multiple_of(6) {
                flags |= 4;
            }
            ("dsnn_opt_radam", c, flags, 2 + usize::from(ranger))
        }
    }
}

#[test]
fn optimizer_kernels_match_the_host_optimiser_bit_for_bit() {
    use dsnn_core::optim::{Optimizer, OptimizerKind, OptimizerSettings};
    use dsnn_core::params::{Param, ParamRole};
    let Some(emu) = emu() else { return };
    type Opt = extern "C" fn(u32, u32, u32, F32m, F32p, F32m, f32, f32, f32, f32, f32, i32);
    let mut rng = StdRng::seed_from_u64(21);
    let n = 1001usize;
    for kind in OptimizerKind::ALL {
        for (mom, wd) in [(0.9f32, 1e-4f32), (0.0, 1e-2), (0.9, 0.0), (0.0, 0.0)] {
            let w0 = uniform(&mut rng, n, -1.0, 1.0);
            let var = Var::from_tensor(&cpu(&w0, &[n])).unwrap();
            let params = [Param {
                name: "w".into(),
                var: var.clone(),
                role: ParamRole::Plain,
            }];
            let mut opt = Optimizer::new(
                OptimizerSettings {
                    kind,
                    lr: 0.1,
                    momentum: f64::from(mom),
                    weight_decay: f64::from(wd),
                },
                1,
            )
            .unwrap();
            let (_, _, _, buffers) = optimizer_kernel(kind, 1, mom);
            let (mut w, mut st) = (w0.clone(), vec![0f32; buffers * n]);
            // 13 steps: RAdam's rectified phase starts at 6, Lookahead
            // synchronises at 6 and 12.
            for t in 1..=13u64 {
                let mut r = uniform(&mut rng, n, -1.0, 1.0);
                r[(t as usize * 7) % n] = 0.0;
                r[(t as usize * 13) % n] = 40.0;
                // The gradient of sum(w * r) is r.
                let grads = (var.as_tensor() * cpu(&r, &[n]))
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let lr = 0.1 / t as f64;
                opt.step(&params, &grads, lr).unwrap();
                let (name, c, flags, _) = optimizer_kernel(kind, t, mom);
                let k: Opt = unsafe { emu.kernel(name) };
                k(
                    G.0,
                    G.1,
                    n as u32,
                    w.as_mut_ptr(),
                    r.as_ptr(),
                    st.as_mut_ptr(),
                    lr as f32,
                    wd,
                    c[0],
                    c[1],
                    c[2],
                    flags,
                );
                assert_exact(
                    &format!("{kind} mom {mom} wd {wd} step {t}"),
                    &w,
                    &vec(var.as_tensor()),
                    0,
                );
            }
            assert_ne!(w, w0, "{kind}: the weights moved");
        }
    }
}
