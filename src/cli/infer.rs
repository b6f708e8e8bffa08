//! `dsnn infer`: run an integer model (from `dsnn export`) on a data set's
//! test split and report accuracy, latency and throughput.

use anyhow::{bail, Context, Result};
use clap::Args;
use dsnn_core::data::{Augment, Batcher};
use dsnn_infer::compare::compare;
use dsnn_infer::{DataRecord, IntModel, Isa, Logits};
use std::path::PathBuf;
use std::time::Instant;

use crate::dsnn_objective::COMMON_DATA_KEYS;
use crate::registry::Registry;
use crate::settings::Section;

/// Arguments of `dsnn infer`.
#[derive(Args, Debug)]
pub struct InferArgs {
    /// Integer model written by `dsnn export`.
    model: PathBuf,
    /// Data set (`dsnn plugins` lists them; default: the one the model was
    /// trained on when its file records it, else fashion-mnist).
    #[arg(long)]
    dataset: Option<String>,
    /// Directory holding the data set's files (default: the bundled subset).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A `[data]` setting of the data set as KEY=VALUE (repeatable; as in
    /// `dsnn train`). A model trained by this version records the settings
    /// it was trained with (an image folder's `size`, `resize`, `channels`)
    /// and uses them; `--data` overrides one of them, or gives them for an
    /// older model, e.g. `--data size=32`.
    #[arg(long = "data", value_name = "KEY=VALUE")]
    data: Vec<String>,
    /// The seed of the split for data sets without a test split of their
    /// own (image folders, digits), so that the test images are the ones
    /// training held out (default: the training run's, when the model
    /// records it, else 0).
    #[arg(long)]
    seed: Option<u64>,
    /// Images per batch for the throughput measurement.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Use at most this many test images.
    #[arg(long)]
    limit: Option<usize>,
    /// Single images timed for the batch-1 latency.
    #[arg(long, default_value_t = 200)]
    latency_images: usize,
    /// Also run the float-simulated network from these weights (saved by
    /// `dsnn train --save`) and report top-1 agreement.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where the integer kernels run: cpu, or cuda / cuda:N (a build with
    /// the `cuda` feature; the logits are the same bit for bit).
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The integer model on the CPU engine or on a GPU.
enum Engine<'a> {
    Cpu(&'a IntModel),
    #[cfg(feature = "cuda")]
    Cuda(&'a IntModel, dsnn_infer::cuda::CudaIntModel),
}

impl<'a> Engine<'a> {
    /// The engine for `--device`, with a line describing it.
    fn new(model: &'a IntModel, device: &str) -> Result<(Self, String)> {
        let (dev, note) =
            dsnn_core::device::select_str(device).with_context(|| format!("--device {device}"))?;
        match dev {
            candle_core::Device::Cpu => Ok((
                Engine::Cpu(model),
                format!(
                    "{} kernels, {} threads",
                    Isa::detect().name(),
                    rayon::current_num_threads()
                ),
            )),
            #[cfg(feature = "cuda")]
            candle_core::Device::Cuda(_) => Ok((
                Engine::Cuda(model, dsnn_infer::cuda::CudaIntModel::new(model, &dev)?),
                note,
            )),
            #[allow(unreachable_patterns)]
            _ => bail!(
                "--device {device}: {note} has no integer kernels (allowed: cpu, cuda, cuda:N)"
            ),
        }
    }

    fn infer_pixels(&self, pixels: &[u8]) -> Result<Logits> {
        Ok(match self {
            Engine::Cpu(m) => m.infer_pixels(pixels)?,
            #[cfg(feature = "cuda")]
            Engine::Cuda(m, gpu) => gpu.infer_quantized(&m.quantize_pixels(pixels)?)?,
        })
    }
}

/// The `[data]` settings of a run: those the model records (if any),
/// each overridden by a `--data KEY=VALUE`.
fn data_with_record(items: &[String], record: Option<&DataRecord>) -> Result<Section> {
    let given = super::train::data_settings(items)?;
    let Some(record) = record else {
        return Ok(given);
    };
    let mut table = toml::Table::new();
    for (key, value) in &record.settings {
        let value = toml::Value::try_from(value).map_err(|e| {
            anyhow::anyhow!(
                "the model's recorded data setting `{key}` = {value} is not a TOML value ({e}); \
                 give it with --data {key}=VALUE"
            )
        })?;
        table.insert(key.clone(), value);
    }
    table.extend(given.table());
    Ok(Section::detached(
        "--data and the model's recorded data settings",
        "data",
        toml::Value::Table(table),
    ))
}

/// Run `dsnn infer`.
pub fn run(a: InferArgs, registry: &Registry) -> Result<()> {
    if let Some(t) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .context("setting --threads")?;
    }
    if a.batch_size == 0 {
        bail!("--batch-size 0 is out of range (allowed: 1 or more)");
    }
    let model = IntModel::load(&a.model)?;
    model.prepare();
    let (engine, engine_note) = Engine::new(&model, &a.device)?;
    let record = model.input_transform.as_ref().and_then(|t| t.data.as_ref());
    let dataset = a
        .dataset
        .clone()
        .or_else(|| record.map(|r| r.dataset.clone()))
        .unwrap_or_else(|| "fashion-mnist".to_string());
    // The recorded settings apply to the data set they were recorded for.
    let record = record.filter(|r| r.dataset == dataset);
    let own = data_with_record(&a.data, record)?.without(COMMON_DATA_KEYS);
    let seed = a.seed.or(record.map(|r| r.split_seed)).unwrap_or(0);
    if let Some(r) = record {
        crate::errln!(
            "dsnn infer: {dataset} as trained ({}split seed {seed})",
            r.settings
                .iter()
                .map(|(k, v)| format!("{k} = {v}, "))
                .collect::<String>()
        );
    }
    let (_, _, splits) =
        super::train::load_splits_with(registry, &dataset, a.data_dir.as_deref(), &own, seed)?;
    let test = splits.test;
    let test = match a.limit {
        Some(n) => test.head(n),
        None => test,
    };
    if test.is_empty() {
        bail!("no test images to run (check --limit and the data directory)");
    }
    if test.shape != model.input || test.classes != model.classes {
        bail!(
            "{} images are {}x{}x{} in {} classes; the model takes {}x{}x{} in {} classes",
            dataset,
            test.shape.channels,
            test.shape.height,
            test.shape.width,
            test.classes,
            model.input.channels,
            model.input.height,
            model.input.width,
            model.classes
        );
    }
    let per = test.shape.channels * test.shape.height * test.shape.width;
    let (mut correct, start) = (0usize, Instant::now());
    for (b, chunk) in test.pixels.chunks(a.batch_size * per).enumerate() {
        let pred = engine.infer_pixels(chunk)?.argmax();
        let labels = &test.labels[b * a.batch_size..];
        correct += pred
            .iter()
            .zip(labels)
            .filter(|(p, l)| **p == usize::from(**l))
            .count();
    }
    let seconds = start.elapsed().as_secs_f64();
    let n = test.len();
    let mut lat: Vec<f64> = Vec::new();
    for img in test.pixels.chunks(per).take(a.latency_images.max(1)) {
        let t = Instant::now();
        engine.infer_pixels(img)?;
        lat.push(t.elapsed().as_secs_f64());
    }
    lat.sort_by(f64::total_cmp);
    crate::errln!(
        "dsnn infer: {} DeepShift-{} on {n} {} test images, {engine_note}",
        model.backbone,
        model.shift_type,
        dataset,
    );
    crate::outln!(
        "accuracy {:.2}% on {n} images; throughput {:.0} img/s at batch {}; latency at batch 1: median {:.3} ms (p90 {:.3} ms)",
        100.0 * correct as f64 / n.max(1) as f64,
        n as f64 / seconds.max(1e-9),
        a.batch_size,
        1e3 * lat[lat.len() / 2],
        1e3 * lat[(lat.len() * 9 / 10).min(lat.len() - 1)]
    )?;
    if let Some(w) = &a.compare {
        let (net, spec) = super::export::load_weights(w, registry)
            .with_context(|| format!("loading {}", w.display()))?;
        let normalization = spec
            .input_transform
            .map(|t| t.normalization)
            .context("the weights file has no input normalisation")?;
        let batcher = Batcher {
            normalization,
            augment: Augment::default(),
        };
        let c = compare(net.as_ref(), &model, &test, &batcher, 1000)?;
        crate::outln!(
            "float-simulated model: accuracy {:.2}%; top-1 agreement {:.2}% ({} of {} images differ)",
            100.0 * c.float_accuracy(),
            100.0 * c.agreement(),
            c.images - c.agree,
            c.images
        )?;
    }
    Ok(())
}
