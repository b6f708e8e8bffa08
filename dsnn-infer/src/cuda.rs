//! Integer inference on an NVIDIA GPU (the `cuda` feature).
//!
//! [`CudaIntModel`] uploads an [`IntModel`]'s tables once (packed codes or
//! bucket plans, biases, batch-norm integers; see [`crate::gpu`]) and runs
//! every step with the kernels of `kernels/int_ops.cu` (compiled to PTX by
//! `build.rs`, loaded through candle's per-device module cache), in the order
//! of [`crate::gpu::run`]. The logits are the CPU engine's bit for bit; the
//! emulation test checks the kernels and this sequence on a CPU.

use crate::error::{InferError, Result};
use crate::gpu::{
    run, GpuLayer, GpuOptions, GpuProgram, GpuStep, GpuWeights, IntBackend, LayerOutput,
    MODE_LOGITS,
};
use crate::model::{IntModel, Logits};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, WrapErr};

/// The PTX of `kernels/int_ops.cu`, one variant per architecture built
/// (`dsnn_kernel_build::compile_ptx`); [`CudaIntModel`] picks the device's.
const PTX: &[dsnn_kernel_build::Ptx] = include!(concat!(env!("OUT_DIR"), "/int_ops.ptx.rs"));
/// The module's name in candle's per-device cache of custom modules.
const MODULE: &str = "dsnn_int_ops";
/// Threads per block.
const THREADS: u32 = 256;

/// A grid-stride launch over `n` elements.
fn grid(n: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(THREADS).clamp(1, 1 << 16), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A layer's tables on the GPU.
pub struct CudaLayer {
    /// Packed codes (one byte when the layer runs on buckets).
    codes: CudaSlice<u8>,
    chan: CudaSlice<u32>,
    buckets: CudaSlice<i32>,
    idx: CudaSlice<u32>,
    acc_init: CudaSlice<i64>,
    mul: CudaSlice<i32>,
    add: CudaSlice<i64>,
}

/// The CUDA launches of [`IntBackend`].
struct Launcher<'a> {
    dev: &'a CudaDevice,
    /// The PTX variant for `dev` (see [`ptx_for`]).
    ptx: &'static str,
}

/// The PTX variant of `kernels/int_ops.cu` that
/// [`dsnn_kernel_build::select_ptx`] picks for `dev`'s compute capability.
fn ptx_for(dev: &CudaDevice) -> Result<&'static str> {
    let (major, minor) = dev.cuda_stream().context().compute_capability().w()?;
    let ptx = dsnn_kernel_build::select_ptx(PTX, major as u32, minor as u32)
        .map_err(candle_core::Error::wrap)?;
    log::debug!(
        "CUDA device {major}.{minor}: loading the compute_{} PTX of int_ops",
        ptx.arch
    );
    Ok(ptx.text)
}

impl Launcher<'_> {
    fn alloc<T: candle_core::cuda_backend::cudarc::driver::DeviceRepr>(
        &self,
        n: usize,
    ) -> Result<CudaSlice<T>> {
        // SAFETY: every caller launches a kernel that writes all n elements
        // before the buffer is read.
        Ok(unsafe { self.dev.alloc::<T>(n.max(1)) }?)
    }
}

impl IntBackend for Launcher<'_> {
    type Act = CudaSlice<i32>;
    type Layer = CudaLayer;

    fn upload_layer(&self, l: &GpuLayer) -> Result<CudaLayer> {
        let d = self.dev;
        let (codes, chan, buckets, idx) = match &l.weights {
            GpuWeights::Packed { codes, .. } => (codes.clone(), vec![0], vec![0], vec![0]),
            GpuWeights::Buckets { chan, buckets, idx } => {
                (vec![0], chan.clone(), buckets.clone(), idx.clone())
            }
        };
        let idx = if idx.is_empty() { vec![0] } else { idx };
        let buckets = if buckets.is_empty() { vec![0] } else { buckets };
        Ok(CudaLayer {
            codes: d.clone_htod(&codes)?,
            chan: d.clone_htod(&chan)?,
            buckets: d.clone_htod(&buckets)?,
            idx: d.clone_htod(&idx)?,
            acc_init: d.clone_htod(&l.acc_init)?,
            mul: d.clone_htod(&l.mul)?,
            add: d.clone_htod(&l.add)?,
        })
    }

    fn upload_input(&self, x: &[i32]) -> Result<CudaSlice<i32>> {
        Ok(self.dev.clone_htod(x)?)
    }

    fn shift_layer(
        &self,
        l: &GpuLayer,
        t: &CudaLayer,
        x: &CudaSlice<i32>,
        n: u32,
        lo: i64,
        hi: i64,
    ) -> Result<LayerOutput<CudaSlice<i32>>> {
        let total = n * l.outputs() as u32;
        let logits_out = l.mode == MODE_LOGITS;
        // The unused output gets one element (kernels take both pointers).
        let mut y = self.alloc::<i32>(if logits_out { 1 } else { total as usize })?;
        let mut logits = self.alloc::<i64>(if logits_out { total as usize } else { 1 })?;
        let relu = i32::from(l.relu);
        let cfg = grid(total);
        match &l.weights {
            GpuWeights::Packed {
                code_bits,
                zero_code,
                ..
            } => {
                let zero_code = i32::from(*zero_code);
                let f =
                    self.dev
                        .get_or_load_custom_func("dsnn_int_shift_packed", MODULE, self.ptx)?;
                let mut b = f.builder();
                b.arg(&total)
                    .arg(x)
                    .arg(&t.codes)
                    .arg(code_bits)
                    .arg(&zero_code);
                b.arg(&t.acc_init)
                    .arg(&l.cin)
                    .arg(&l.h)
                    .arg(&l.w)
                    .arg(&l.cout);
                b.arg(&l.kernel)
                    .arg(&l.stride)
                    .arg(&l.pad)
                    .arg(&l.oh)
                    .arg(&l.ow);
                b.arg(&l.acc_shift)
                    .arg(&l.mode)
                    .arg(&relu)
                    .arg(&t.mul)
                    .arg(&t.add);
                b.arg(&l.mul_shift)
                    .arg(&lo)
                    .arg(&hi)
                    .arg(&mut y)
                    .arg(&mut logits);
                // SAFETY: the arguments match the kernel's signature.
                unsafe { b.launch(cfg) }.w()?;
            }
            GpuWeights::Buckets { .. } => {
                let f =
                    self.dev
                        .get_or_load_custom_func("dsnn_int_shift_buckets", MODULE, self.ptx)?;
                let mut b = f.builder();
                b.arg(&total)
                    .arg(x)
                    .arg(&t.chan)
                    .arg(&t.buckets)
                    .arg(&t.idx);
                b.arg(&t.acc_init)
                    .arg(&l.cin)
                    .arg(&l.h)
                    .arg(&l.w)
                    .arg(&l.cout);
                b.arg(&l.stride).arg(&l.pad).arg(&l.oh).arg(&l.ow);
                b.arg(&l.acc_shift)
                    .arg(&l.mode)
                    .arg(&relu)
                    .arg(&t.mul)
                    .arg(&t.add);
                b.arg(&l.mul_shift)
                    .arg(&lo)
                    .arg(&hi)
                    .arg(&mut y)
                    .arg(&mut logits);
                // SAFETY: the arguments match the kernel's signature.
                unsafe { b.launch(cfg) }.w()?;
            }
        }
        if logits_out {
            Ok(LayerOutput::Logits(self.dev.clone_dtoh(&logits)?))
        } else {
            Ok(LayerOutput::Act(y))
        }
    }

    fn max_pool2(
        &self,
        x: &CudaSlice<i32>,
        n: u32,
        c: u32,
        h: u32,
        w: u32,
    ) -> Result<CudaSlice<i32>> {
        let (oh, ow) = (h / 2, w / 2);
        let total = n * c * oh * ow;
        let mut y = self.alloc::<i32>(total as usize)?;
        let f = self
            .dev
            .get_or_load_custom_func("dsnn_int_max_pool2", MODULE, self.ptx)?;
        let mut b = f.builder();
        b.arg(&total)
            .arg(x)
            .arg(&mut y)
            .arg(&h)
            .arg(&w)
            .arg(&oh)
            .arg(&ow);
        // SAFETY: the arguments match the kernel's signature.
        unsafe { b.launch(grid(total)) }.w()?;
        Ok(y)
    }

    fn add_residual(
        &self,
        x: &CudaSlice<i32>,
        shortcut: &CudaSlice<i32>,
        n: u32,
        step: GpuStep,
        lo: i64,
        hi: i64,
    ) -> Result<CudaSlice<i32>> {
        let GpuStep::AddResidual {
            c,
            h,
            w,
            sc,
            sh,
            sw,
            pad,
        } = step
        else {
            return Err(InferError::Input(
                "add_residual needs a residual step".into(),
            ));
        };
        let total = n * c * h * w;
        let (has_pad, pad) = (i32::from(pad.is_some()), pad.unwrap_or(0));
        let mut y = self.alloc::<i32>(total as usize)?;
        let f = self
            .dev
            .get_or_load_custom_func("dsnn_int_add_residual", MODULE, self.ptx)?;
        let mut b = f.builder();
        b.arg(&total)
            .arg(x)
            .arg(shortcut)
            .arg(&mut y)
            .arg(&c)
            .arg(&h)
            .arg(&w);
        b.arg(&sc)
            .arg(&sh)
            .arg(&sw)
            .arg(&has_pad)
            .arg(&pad)
            .arg(&lo)
            .arg(&hi);
        // SAFETY: the arguments match the kernel's signature.
        unsafe { b.launch(grid(total)) }.w()?;
        Ok(y)
    }

    fn avg_pool(&self, x: &CudaSlice<i32>, n: u32, c: u32, hw: u32) -> Result<CudaSlice<i32>> {
        let planes = n * c;
        let mut y = self.alloc::<i32>(planes as usize)?;
        let f = self
            .dev
            .get_or_load_custom_func("dsnn_int_avg_pool", MODULE, self.ptx)?;
        let mut b = f.builder();
        b.arg(&planes).arg(x).arg(&mut y).arg(&hw);
        // SAFETY: the arguments match the kernel's signature.
        unsafe { b.launch(grid(planes)) }.w()?;
        Ok(y)
    }
}

/// An integer model with its tables on one CUDA device.
pub struct CudaIntModel {
    program: GpuProgram,
    tables: Vec<CudaLayer>,
    dev: CudaDevice,
    ptx: &'static str,
}

impl CudaIntModel {
    /// Uploads `model`'s tables to `device` (which must be a CUDA device).
    pub fn new(model: &IntModel, device: &candle_core::Device) -> Result<Self> {
        Self::with_options(model, device, GpuOptions::default())
    }

    /// [`CudaIntModel::new`] with explicit [`GpuOptions`].
    pub fn with_options(
        model: &IntModel,
        device: &candle_core::Device,
        opts: GpuOptions,
    ) -> Result<Self> {
        let dev = device.as_cuda_device()?.clone();
        let program = GpuProgram::new(model, opts)?;
        let ptx = ptx_for(&dev)?;
        let launcher = Launcher { dev: &dev, ptx };
        let tables = program
            .layers
            .iter()
            .map(|l| launcher.upload_layer(l))
            .collect::<Result<Vec<_>>>()?;
        log::debug!(
            "integer model on the GPU: {} shift layers ({} on packed codes)",
            program.layers.len(),
            program
                .layers
                .iter()
                .filter(|l| matches!(l.weights, GpuWeights::Packed { .. }))
                .count()
        );
        Ok(CudaIntModel {
            program,
            tables,
            dev,
            ptx,
        })
    }

    /// Integer logits of quantised images (`n x C x H x W` activation
    /// integers, as [`IntModel::quantize_input`] makes them).
    pub fn infer_quantized(&self, x: &[i32]) -> Result<Logits> {
        let launcher = Launcher {
            dev: &self.dev,
            ptx: self.ptx,
        };
        run(&launcher, &self.program, &self.tables, x)
    }
}

impl IntModel {
    /// Integer logits of normalised float images (`n x C x H x W`) computed
    /// on a CUDA device: the same values as [`IntModel::infer`]. Uploads the
    /// weights on every call; keep a [`CudaIntModel`] for repeated batches.
    pub fn infer_cuda(&self, images: &[f32], device: &candle_core::Device) -> Result<Logits> {
        CudaIntModel::new(self, device)?.infer_quantized(&self.quantize_input(images))
    }
}
