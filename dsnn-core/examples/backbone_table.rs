//! The table of built-in backbones in `docs/backbones.md`: convertible
//! layers, parameters, MACs per image and the op-count energy per image
//! (float, DeepShift-Q and DeepShift-PS, every layer converted, 5-bit
//! weights, 16+16-bit activations; Horowitz 45 nm table, weights read from
//! DRAM once per image: the `opcount` meter's defaults), each at the
//! backbone's default input shape.
//!
//! `cargo run --release -p dsnn-core --example backbone_table`

use candle_core::Device;
use dsnn_core::{builtin_backbones, ModelSpec, ShiftEnd, ShiftSettings, ShiftType};
use dsnn_energy::OpCountModel;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = OpCountModel::default();
    println!("| backbone | input | convertible convolutions | parameters | MACs per image | energy float µJ | Q µJ | PS µJ |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for b in builtin_backbones() {
        let spec = |shift: Option<ShiftType>| ModelSpec {
            input: b.default_input(),
            classes: 10,
            shift: shift.map(|t| ShiftSettings {
                shift_type: t,
                ..Default::default()
            }),
            shift_depth: usize::MAX,
            shift_end: ShiftEnd::Output,
            seed: 0,
            arch: Default::default(),
        };
        let float = spec(None);
        let params = b.build(&float, &Device::Cpu)?.params().num_scalars();
        let profile = b.op_profile(&float)?;
        let energy = |s: Option<ShiftType>| -> Result<f64, Box<dyn std::error::Error>> {
            let p = b.op_profile(&spec(s))?;
            Ok(model.predict(&p).per_image().picojoules() / 1e6)
        };
        let i = b.default_input();
        println!(
            "| {} | {}x{}x{} | {} | {} | {:.1} M | {:.1} | {:.1} | {:.1} |",
            b.name(),
            i.channels,
            i.height,
            i.width,
            b.num_convertible_layers(&Default::default()),
            params,
            profile.total_macs() as f64 / 1e6,
            energy(None)?,
            energy(Some(ShiftType::Q))?,
            energy(Some(ShiftType::PS))?,
        );
    }
    Ok(())
}
