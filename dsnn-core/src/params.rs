//! The trainable parameters and buffers of a network, with the projections
//! DeepShift applies to them after every update.

use crate::error::{CoreError, Result};
use crate::quant::{clamp_abs, clamp_ps_shift, q_shift_range};
use candle_core::{Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// What a parameter is, which decides how it is kept in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRole {
    /// A float weight or bias, or a batch-norm scale or shift.
    Plain,
    /// The float master weight of a DeepShift-Q layer; `|w|` is kept in
    /// `[2^lo, 1]` (zeros stay zero), as the reference does in place.
    QWeight {
        /// Bits per weight.
        weight_bits: u32,
    },
    /// The shift parameter of a DeepShift-PS layer, kept in `[lo, 0]`.
    PsShift {
        /// Bits per weight.
        weight_bits: u32,
    },
    /// The sign parameter of a DeepShift-PS layer (not clamped, as the reference).
    PsSign,
}

/// One trainable tensor.
#[derive(Debug, Clone)]
pub struct Param {
    /// Dotted name, for example `layer1.0.conv1.weight`.
    pub name: String,
    /// The tensor, updated in place by optimisers.
    pub var: Var,
    /// How it is projected after updates.
    pub role: ParamRole,
}

/// All parameters and non-trainable buffers (batch-norm running statistics).
#[derive(Debug, Clone, Default)]
pub struct ParamStore {
    params: Vec<Param>,
    buffers: Vec<(String, Var)>,
}

/// Replaces every value by `f(value)`; whether any compared unequal (as
/// the float `!=` of the old and new value).
#[inline]
fn project_in_place(values: &mut [f32], f: impl Fn(f32) -> f32) -> bool {
    let mut changed = false;
    for v in values.iter_mut() {
        let new = f(*v);
        changed |= new != *v;
        *v = new;
    }
    changed
}

impl ParamStore {
    /// Registers a trainable parameter.
    pub fn add(&mut self, name: String, var: Var, role: ParamRole) {
        self.params.push(Param { name, var, role });
    }

    /// Registers a buffer: saved with the model but not trained.
    pub fn add_buffer(&mut self, name: String, var: Var) {
        self.buffers.push((name, var));
    }

    /// The trainable parameters in registration order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Number of trainable scalars.
    pub fn num_scalars(&self) -> usize {
        self.params.iter().map(|p| p.var.elem_count()).sum()
    }

    /// Applies DeepShift's in-range projections (Q `clampabs`, PS shift
    /// clamp). The trainer calls it once after building and after every step,
    /// which is what the reference's in-place clamping in `forward` amounts to.
    pub fn project(&self) -> Result<()> {
        for p in &self.params {
            // On a GPU: in place there, no copy to the host and back.
            #[cfg(feature = "cuda")]
            if p.var.device().is_cuda() {
                let t = p.var.as_tensor();
                match p.role {
                    ParamRole::QWeight { weight_bits } => t.inplace_op1(&ClampAbsInPlace {
                        lo: q_shift_range(weight_bits).0,
                    })?,
                    ParamRole::PsShift { weight_bits } => {
                        let (lo, hi) = crate::quant::ps_shift_range(weight_bits);
                        p.var.set(&t.clamp(lo as f32, hi as f32)?)?;
                    }
                    ParamRole::Plain | ParamRole::PsSign => {}
                }
                continue;
            }
            if matches!(p.role, ParamRole::Plain | ParamRole::PsSign) {
                continue;
            }
            let t = p.var.as_tensor();
            let mut values: Vec<f32> = t.flatten_all()?.to_vec1::<f32>()?;
            // One monomorphic in-place pass per role (a boxed closure per
            // element cost a few per cent of a LeNet-5 Q step).
            let changed = match p.role {
                ParamRole::QWeight { weight_bits } => {
                    let lo = q_shift_range(weight_bits).0;
                    project_in_place(&mut values, |w| clamp_abs(w, lo))
                }
                ParamRole::PsShift { weight_bits } => {
                    project_in_place(&mut values, |s| clamp_ps_shift(s, weight_bits))
                }
                ParamRole::Plain | ParamRole::PsSign => false,
            };
            if changed {
                p.var
                    .set(&Tensor::from_vec(values, t.shape(), t.device())?)?;
            }
        }
        Ok(())
    }

    /// Every tensor (parameters and buffers) by name.
    pub fn named_tensors(&self) -> HashMap<String, Tensor> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .chain(
                self.buffers
                    .iter()
                    .map(|(n, v)| (n.clone(), v.as_tensor().clone())),
            )
            .collect()
    }

    /// Writes every parameter and buffer to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.named_tensors(), path).map_err(|e| CoreError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Loads parameters and buffers saved by [`ParamStore::save`] from a
    /// network with the same architecture and configuration.
    pub fn load(&self, path: &Path) -> Result<()> {
        let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .map_err(|e| CoreError::data(path, e.to_string()))?;
        let all = self
            .params
            .iter()
            .map(|p| (&p.name, &p.var))
            .chain(self.buffers.iter().map(|(n, v)| (n, v)));
        for (name, var) in all {
            let t = tensors
                .get(name)
                .ok_or_else(|| CoreError::data(path, format!("has no tensor `{name}`")))?;
            if t.shape() != var.shape() {
                return Err(CoreError::data(
                    path,
                    format!(
                        "tensor `{name}` has shape {:?}, the network expects {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(&t.to_device(var.device())?)?;
        }
        Ok(())
    }
}

/// DeepShift-Q's `clamp_abs` applied in place to a master weight on the
/// GPU (`ParamStore::project` on CUDA tensors; the CPU keeps its own path).
#[cfg(feature = "cuda")]
#[derive(Debug, Clone, Copy)]
struct ClampAbsInPlace {
    /// The lower end of the exponent range (`|w| >= 2^lo`).
    lo: i32,
}

#[cfg(feature = "cuda")]
impl candle_core::InplaceOp1 for ClampAbsInPlace {
    fn name(&self) -> &'static str {
        "dsnn-clamp-abs"
    }
    fn cpu_fwd(
        &self,
        s: &mut candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("dsnn ops need contiguous f32 tensors");
        };
        match s {
            candle_core::CpuStorage::F32(v) => {
                for w in &mut v[a..b] {
                    *w = clamp_abs(*w, self.lo);
                }
                Ok(())
            }
            _ => candle_core::bail!("dsnn ops need contiguous f32 tensors"),
        }
    }
    fn cuda_fwd(
        &self,
        s: &mut candle_core::CudaStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        crate::cuda::clamp_abs_inplace(s, l, self.lo)
    }
}
