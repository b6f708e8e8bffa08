//! The analytic op-count energy model: energy per operation by kind and bit
//! width, applied to a network's [`OpProfile`] to predict inference energy
//! per image.
//!
//! The default figures are Horowitz's 45 nm, 0.9 V table ("Computing's
//! energy problem (and what we can do about it)", ISSCC 2014, p. 10-14):
//!
//! | operation | 8 bit | 16 bit | 32 bit |
//! |---|---|---|---|
//! | integer add | 0.03 pJ | | 0.1 pJ |
//! | integer multiply | 0.2 pJ | | 3.1 pJ |
//! | float add | | 0.4 pJ | 0.9 pJ |
//! | float multiply | | 1.1 pJ | 3.7 pJ |
//!
//! and 64-bit memory reads of 10 pJ (8 KB cache), 20 pJ (32 KB), 100 pJ
//! (1 MB) and 1.3-2.6 nJ (DRAM); we use the DRAM lower bound. Integer widths
//! between and beyond the anchors are interpolated: adds linearly in the
//! width, multiplies in the square of the width (an array multiplier has
//! width^2 cells). Horowitz gives no figure for a shift; by default a shift
//! costs an integer add of the same width (a barrel shifter and an adder
//! are both about one gate row per bit), which can be overridden.
//!
//! The model is deterministic: the same profile gives the same joules on any
//! machine, so tests and CI can reason about energy exactly. It counts
//! arithmetic and weight reads only; activation traffic, control and
//! instruction overheads are not modelled (see `docs/energy.md`).

use crate::error::{EnergyError, Result};
use crate::meter::{
    Component, ComponentEnergy, EnergyMeter, EnergyReading, Provenance, RegionTimer, RusageClock,
};
use crate::profile::{LayerKind, LayerOps, OpProfile};
use crate::units::Energy;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Energy of an integer operation as a function of its bit width, given by
/// anchor points and interpolated in `width^exponent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WidthCurve {
    /// (bits, pJ) anchors in increasing bit order; at least one.
    pub anchors: Vec<(u32, f64)>,
    /// 1 for adds and shifts (linear in width), 2 for multiplies.
    pub exponent: i32,
}

impl WidthCurve {
    /// Energy in pJ at `bits` (0 bits cost nothing).
    pub fn pj(&self, bits: u32) -> f64 {
        let Some(&(b_lo, e_lo)) = self.anchors.first() else {
            return 0.0;
        };
        let scale = |b: u32| f64::from(b).powi(self.exponent);
        let x = scale(bits);
        if bits <= b_lo {
            return e_lo * x / scale(b_lo);
        }
        for w in self.anchors.windows(2) {
            let ((b0, e0), (b1, e1)) = (w[0], w[1]);
            if bits <= b1 {
                let t = (x - scale(b0)) / (scale(b1) - scale(b0));
                return e0 + t * (e1 - e0);
            }
        }
        let &(b_hi, e_hi) = self.anchors.last().expect("non-empty");
        e_hi * x / scale(b_hi)
    }

    fn validate(&self, what: &str) -> Result<()> {
        let ok = !self.anchors.is_empty()
            && self.anchors.windows(2).all(|w| w[0].0 < w[1].0)
            && self
                .anchors
                .iter()
                .all(|&(b, e)| b > 0 && e.is_finite() && e >= 0.0);
        if ok {
            Ok(())
        } else {
            Err(EnergyError::invalid(
                what,
                "anchors must be non-empty, with increasing positive widths and non-negative energies",
            ))
        }
    }
}

/// Where weights are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryLevel {
    /// An 8 KB cache (10 pJ per 64-bit read).
    Cache8K,
    /// A 32 KB cache (20 pJ per 64-bit read).
    Cache32K,
    /// A 1 MB cache (100 pJ per 64-bit read).
    Cache1M,
    /// DRAM (1.3 nJ per 64-bit read, the lower bound of Horowitz's range).
    Dram,
}

/// Energy per operation; [`OpEnergyTable::horowitz_45nm`] is the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpEnergyTable {
    /// Where the figures come from.
    pub source: String,
    /// 32-bit float add, pJ.
    pub f32_add_pj: f64,
    /// 32-bit float multiply, pJ.
    pub f32_mul_pj: f64,
    /// 16-bit float add, pJ.
    pub f16_add_pj: f64,
    /// 16-bit float multiply, pJ.
    pub f16_mul_pj: f64,
    /// Integer add by width.
    pub int_add: WidthCurve,
    /// Integer multiply by width.
    pub int_mul: WidthCurve,
    /// Shift by width.
    pub shift: WidthCurve,
    /// Read energy per byte at each memory level, pJ: 8 KB, 32 KB, 1 MB, DRAM.
    pub read_pj_per_byte: [f64; 4],
}

impl OpEnergyTable {
    /// Horowitz, ISSCC 2014, 45 nm at 0.9 V (see the module docs).
    pub fn horowitz_45nm() -> Self {
        let int_add = WidthCurve {
            anchors: vec![(8, 0.03), (32, 0.1)],
            exponent: 1,
        };
        OpEnergyTable {
            source: "Horowitz, ISSCC 2014, 45 nm, 0.9 V".into(),
            f32_add_pj: 0.9,
            f32_mul_pj: 3.7,
            f16_add_pj: 0.4,
            f16_mul_pj: 1.1,
            shift: int_add.clone(),
            int_add,
            int_mul: WidthCurve {
                anchors: vec![(8, 0.2), (32, 3.1)],
                exponent: 2,
            },
            // 64-bit reads: 10 pJ, 20 pJ, 100 pJ, 1.3 nJ; / 8 bytes.
            read_pj_per_byte: [10.0 / 8.0, 20.0 / 8.0, 100.0 / 8.0, 1300.0 / 8.0],
        }
    }

    /// Checks that every figure is usable.
    pub fn validate(&self) -> Result<()> {
        let scalars = [
            self.f32_add_pj,
            self.f32_mul_pj,
            self.f16_add_pj,
            self.f16_mul_pj,
        ];
        if scalars
            .iter()
            .chain(&self.read_pj_per_byte)
            .any(|v| !v.is_finite() || *v < 0.0)
        {
            return Err(EnergyError::invalid(
                "op energy table",
                "energies must be finite and non-negative",
            ));
        }
        self.int_add.validate("integer add curve")?;
        self.int_mul.validate("integer multiply curve")?;
        self.shift.validate("shift curve")
    }

    /// Read energy per byte at `level`, pJ.
    pub fn read_pj(&self, level: MemoryLevel) -> f64 {
        self.read_pj_per_byte[match level {
            MemoryLevel::Cache8K => 0,
            MemoryLevel::Cache32K => 1,
            MemoryLevel::Cache1M => 2,
            MemoryLevel::Dram => 3,
        }]
    }

    /// Energy of one multiply-accumulate of a float layer with these weight
    /// bits (16 -> half precision, otherwise single), pJ.
    pub fn float_mac_pj(&self, weight_bits: u32) -> f64 {
        if weight_bits == 16 {
            self.f16_mul_pj + self.f16_add_pj
        } else {
            self.f32_mul_pj + self.f32_add_pj
        }
    }

    /// Energy of one shift-accumulate on `activation_bits`-bit fixed-point
    /// activations (shift, then add into an accumulator of the same width), pJ.
    pub fn shift_mac_pj(&self, activation_bits: u32) -> f64 {
        self.shift.pj(activation_bits) + self.int_add.pj(activation_bits)
    }
}

impl Default for OpEnergyTable {
    fn default() -> Self {
        Self::horowitz_45nm()
    }
}

/// The op-count energy model: a table plus where weights come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpCountModel {
    /// Energy per operation.
    pub table: OpEnergyTable,
    /// Memory level weights are read from.
    pub weight_memory: MemoryLevel,
    /// How many times the weights are read per image (1 for batch size 1,
    /// 1/B when a batch of B shares one read).
    pub weight_reads_per_image: f64,
}

impl Default for OpCountModel {
    fn default() -> Self {
        OpCountModel {
            table: OpEnergyTable::horowitz_45nm(),
            weight_memory: MemoryLevel::Dram,
            weight_reads_per_image: 1.0,
        }
    }
}

/// Predicted energy of one layer for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerEnergy {
    /// The layer's name.
    pub name: String,
    /// Arithmetic, pJ.
    pub compute_pj: f64,
    /// Weight reads, pJ.
    pub memory_pj: f64,
}

/// Predicted inference energy of a network for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceEnergy {
    /// Per layer, in forward order.
    pub layers: Vec<LayerEnergy>,
    /// Arithmetic of all layers, pJ.
    pub compute_pj: f64,
    /// Weight reads of all layers, pJ.
    pub memory_pj: f64,
}

impl InferenceEnergy {
    /// Total energy per image.
    pub fn per_image(&self) -> Energy {
        Energy::from_picojoules(self.compute_pj + self.memory_pj)
    }

    /// Total energy for `images` images.
    pub fn for_images(&self, images: u64) -> Energy {
        self.per_image().scaled(images as f64)
    }
}

impl OpCountModel {
    /// Checks the table and the read count.
    pub fn validate(&self) -> Result<()> {
        self.table.validate()?;
        if !self.weight_reads_per_image.is_finite() || self.weight_reads_per_image < 0.0 {
            return Err(EnergyError::invalid(
                "weight reads per image",
                format!("{}", self.weight_reads_per_image),
            ));
        }
        Ok(())
    }

    /// Energy of one layer for one image.
    pub fn layer(&self, l: &LayerOps) -> LayerEnergy {
        let t = &self.table;
        let n = l.macs as f64;
        let compute_pj = match l.kind {
            LayerKind::Conv2d | LayerKind::Linear if l.shift => {
                n * t.shift_mac_pj(l.activation_bits)
            }
            LayerKind::Conv2d | LayerKind::Linear => n * t.float_mac_pj(l.weight_bits),
            LayerKind::BatchNorm => n * (t.f32_mul_pj + t.f32_add_pj),
            LayerKind::Elementwise => n * t.f32_add_pj,
        };
        let weight_bytes = l.params as f64 * f64::from(l.weight_bits) / 8.0;
        let memory_pj = weight_bytes * self.weight_reads_per_image * t.read_pj(self.weight_memory);
        LayerEnergy {
            name: l.name.clone(),
            compute_pj,
            memory_pj,
        }
    }

    /// Inference energy of `profile` for one image.
    pub fn predict(&self, profile: &OpProfile) -> InferenceEnergy {
        let layers: Vec<LayerEnergy> = profile.layers.iter().map(|l| self.layer(l)).collect();
        InferenceEnergy {
            compute_pj: layers.iter().map(|l| l.compute_pj).sum(),
            memory_pj: layers.iter().map(|l| l.memory_pj).sum(),
            layers,
        }
    }
}

/// A counter of processed images, shared between an [`OpCountMeter`] and
/// the code that runs inference.
#[derive(Debug, Clone, Default)]
pub struct ImageCounter(Arc<AtomicU64>);

impl ImageCounter {
    /// Records `n` more images.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Images recorded so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The op-count model as an [`EnergyMeter`]: the energy of a region is the
/// per-image prediction times the images counted during it.
pub struct OpCountMeter {
    per_image: Energy,
    counter: ImageCounter,
    start: Option<(RegionTimer, u64)>,
}

impl OpCountMeter {
    /// A meter for `profile` under `model`.
    pub fn new(model: &OpCountModel, profile: &OpProfile) -> Result<Self> {
        model.validate()?;
        Ok(OpCountMeter {
            per_image: model.predict(profile).per_image(),
            counter: ImageCounter::default(),
            start: None,
        })
    }

    /// The counter to call [`ImageCounter::add`] on as images are processed.
    pub fn counter(&self) -> ImageCounter {
        self.counter.clone()
    }

    /// The predicted energy per image.
    pub fn per_image(&self) -> Energy {
        self.per_image
    }
}

impl EnergyMeter for OpCountMeter {
    fn name(&self) -> &str {
        "op-count"
    }

    fn start(&mut self) -> Result<()> {
        if self.start.is_some() {
            return Err(EnergyError::AlreadyStarted(self.name().into()));
        }
        self.start = Some((RegionTimer::start(&RusageClock)?, self.counter.get()));
        Ok(())
    }

    fn stop(&mut self) -> Result<EnergyReading> {
        let (timer, images0) = self
            .start
            .take()
            .ok_or_else(|| EnergyError::NotStarted(self.name().into()))?;
        let span = timer.finish(&RusageClock)?;
        let images = self.counter.get().saturating_sub(images0);
        Ok(EnergyReading::from_components(
            self.name(),
            span,
            vec![ComponentEnergy {
                component: Component::Other,
                energy: self.per_image.scaled(images as f64),
                source: format!("op-count:{images} images"),
                provenance: Provenance::Estimated,
            }],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::measure;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn horowitz_anchors_are_reproduced() {
        let t = OpEnergyTable::horowitz_45nm();
        assert!(close(t.int_add.pj(8), 0.03));
        assert!(close(t.int_add.pj(32), 0.1));
        assert!(close(t.int_mul.pj(8), 0.2));
        assert!(close(t.int_mul.pj(32), 3.1));
        assert_eq!(t.float_mac_pj(32), 3.7 + 0.9);
        assert_eq!(t.float_mac_pj(16), 1.1 + 0.4);
        assert_eq!(t.read_pj(MemoryLevel::Cache8K), 1.25);
        assert_eq!(t.read_pj(MemoryLevel::Dram), 162.5);
        t.validate().unwrap();
    }

    #[test]
    fn widths_interpolate_linearly_for_adds_and_quadratically_for_multiplies() {
        let t = OpEnergyTable::horowitz_45nm();
        // Add at 16 bits: 0.03 + (16-8)/(32-8) x 0.07.
        assert!(close(t.int_add.pj(16), 0.03 + 0.07 / 3.0));
        // Below and above the anchors: proportional to the width.
        assert!(close(t.int_add.pj(4), 0.015));
        assert!(close(t.int_add.pj(64), 0.2));
        // Multiply at 16 bits: 0.2 + (256-64)/(1024-64) x 2.9 = 0.78.
        assert!(close(t.int_mul.pj(16), 0.78));
        assert!(close(t.int_mul.pj(4), 0.05));
        assert_eq!(t.int_add.pj(0), 0.0);
        // Shift defaults to an add of the same width.
        assert!(close(t.shift_mac_pj(32), 0.2));
    }

    fn layer(kind: LayerKind, macs: u64, shift: bool, wb: u32, ab: u32, params: u64) -> LayerOps {
        LayerOps {
            name: format!("{kind:?}"),
            kind,
            macs,
            shift,
            weight_bits: wb,
            activation_bits: ab,
            params,
        }
    }

    #[test]
    fn profile_energy_matches_hand_computation() {
        let p = OpProfile {
            layers: vec![
                layer(LayerKind::Conv2d, 1000, false, 32, 32, 100),
                layer(LayerKind::BatchNorm, 50, false, 32, 32, 0),
                layer(LayerKind::Elementwise, 40, false, 32, 32, 0),
                layer(LayerKind::Conv2d, 2000, true, 5, 32, 200),
                layer(LayerKind::Linear, 100, true, 4, 8, 100),
            ],
        };
        let m = OpCountModel::default();
        let e = m.predict(&p);
        // Compute (pJ):
        //   float conv  1000 x (3.7 + 0.9)          = 4600
        //   batch norm    50 x (3.7 + 0.9)          =  230
        //   elementwise   40 x 0.9                  =   36
        //   shift conv  2000 x (0.1 + 0.1)          =  400
        //   shift fc     100 x (0.03 + 0.03)        =    6
        let compute = 4600.0 + 230.0 + 36.0 + 400.0 + 6.0;
        assert!(close(e.compute_pj, compute), "{}", e.compute_pj);
        // Weights from DRAM at 162.5 pJ/byte:
        //   100 x 4 B + 200 x 5/8 B + 100 x 4/8 B = 400 + 125 + 50 = 575 B
        assert!(close(e.memory_pj, 575.0 * 162.5), "{}", e.memory_pj);
        assert!(close(
            e.per_image().joules(),
            (compute + 575.0 * 162.5) * 1e-12
        ));
        assert!(close(
            e.for_images(10).joules(),
            10.0 * e.per_image().joules()
        ));
        assert_eq!(e.layers.len(), 5);
        assert!(close(e.layers[3].compute_pj, 400.0));
        assert!(close(e.layers[3].memory_pj, 125.0 * 162.5));
    }

    #[test]
    fn converting_layers_to_shifts_saves_energy() {
        let float = OpProfile {
            layers: vec![layer(LayerKind::Conv2d, 10_000, false, 32, 32, 1000)],
        };
        let shift = OpProfile {
            layers: vec![layer(LayerKind::Conv2d, 10_000, true, 5, 32, 1000)],
        };
        let m = OpCountModel {
            weight_memory: MemoryLevel::Cache32K,
            ..OpCountModel::default()
        };
        let (f, s) = (m.predict(&float), m.predict(&shift));
        // 4.6 pJ vs 0.2 pJ per MAC: 23x less arithmetic; 32/5 x fewer weight bytes.
        assert!(close(f.compute_pj / s.compute_pj, 23.0));
        assert!(close(f.memory_pj / s.memory_pj, 32.0 / 5.0));
    }

    #[test]
    fn invalid_tables_are_rejected() {
        let mut m = OpCountModel::default();
        m.table.int_mul.anchors = vec![(32, 3.1), (8, 0.2)];
        assert!(m.validate().is_err());
        let mut m = OpCountModel::default();
        m.table.f32_add_pj = -1.0;
        assert!(m.validate().is_err());
        let m = OpCountModel {
            weight_reads_per_image: f64::NAN,
            ..OpCountModel::default()
        };
        assert!(OpCountMeter::new(&m, &OpProfile::default()).is_err());
    }

    #[test]
    fn meter_multiplies_per_image_energy_by_images_counted() {
        let p = OpProfile {
            layers: vec![layer(LayerKind::Linear, 1000, false, 32, 32, 0)],
        };
        let mut m = OpCountMeter::new(&OpCountModel::default(), &p).unwrap();
        assert!(close(m.per_image().picojoules(), 4600.0));
        let counter = m.counter();
        counter.add(3); // before the region: not counted
        let ((), r) = measure(&mut m, || counter.add(64)).unwrap();
        assert!(close(r.joules(), 64.0 * 4600.0e-12));
        assert_eq!(r.provenance, Provenance::Estimated);
        assert_eq!(r.energy_of(Component::Other), r.energy);
        assert_eq!(r.components[0].source, "op-count:64 images");
    }
}
