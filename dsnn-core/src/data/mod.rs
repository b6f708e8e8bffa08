//! Image classification datasets: loaders for the canonical formats, splits,
//! normalisation, augmentation and batching.
//!
//! Formats: IDX (MNIST, Fashion-MNIST; gzip or raw), CIFAR-10 binary batches,
//! the UCI optical digits CSV (64 values 0..16 then the label; gzip or
//! raw), CIFAR-100 binary files ([`cifar100`]), and PNG/JPEG image folders
//! and Tiny ImageNet ([`image_folder`], decoded by [`images`], cached by
//! [`image_cache`]). Every format error names the file.

pub mod cifar100;
pub mod image_cache;
pub mod image_folder;
pub mod images;

use crate::backbone::InputShape;
use crate::error::{CoreError, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A labelled set of images kept as raw bytes.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Pixels, image after image, each `channels x height x width` (CHW).
    pub pixels: Vec<u8>,
    /// One label per image, `0..classes`.
    pub labels: Vec<u8>,
    /// Shape of one image.
    pub shape: InputShape,
    /// Number of classes.
    pub classes: usize,
    /// The value of a full-intensity pixel (255, or 16 for the digits).
    pub pixel_max: f32,
}

/// The data sets dsnn reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// MNIST handwritten digits, 28x28 grey (IDX).
    Mnist,
    /// Zalando's Fashion-MNIST, 28x28 grey (IDX).
    FashionMnist,
    /// CIFAR-10, 32x32 colour (binary batches).
    Cifar10,
    /// UCI optical digits, 8x8 grey with values 0..16 (CSV).
    Digits,
}

impl std::str::FromStr for DatasetName {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "mnist" => Ok(DatasetName::Mnist),
            "fashion-mnist" | "fashionmnist" => Ok(DatasetName::FashionMnist),
            "cifar10" | "cifar-10" => Ok(DatasetName::Cifar10),
            "digits" => Ok(DatasetName::Digits),
            _ => Err(format!(
                "unknown dataset `{s}` (allowed: mnist, fashion-mnist, cifar10, digits)"
            )),
        }
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Digits => "digits",
        })
    }
}

/// A training set and a held-out test set.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Images to train on (and to carve a validation split from).
    pub train: Dataset,
    /// Images to report final accuracy on.
    pub test: Dataset,
}

/// Most bytes dsnn reads from one data file, before and after
/// decompression (2 GiB; the largest real file, MNIST's training images, is
/// 47 MB). A larger or gzip-bombed file is an error naming the file, not an
/// out-of-memory kill.
pub const MAX_DATA_FILE_BYTES: u64 = 1 << 31;

/// Reads a whole file, decompressing gzip (detected by its magic bytes),
/// up to [`MAX_DATA_FILE_BYTES`].
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    read_bounded(path, MAX_DATA_FILE_BYTES)
}

/// [`read_maybe_gzip`] with the size limit as a parameter (tests use a small one).
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let io = |e| CoreError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let too_big = |what: &str| {
        CoreError::data(
            path,
            format!(
                "{what} more than {limit} bytes, the most dsnn reads from one data file (truncated or not a data set)"
            ),
        )
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len > limit {
        return Err(too_big(&format!("holds {len} bytes,")));
    }
    // The length only sizes the buffer; `take` holds the limit if the file grows.
    let mut raw = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut raw).map_err(io)?;
    if raw.len() as u64 > limit {
        return Err(too_big("grew while read to"));
    }
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| CoreError::data(path, format!("corrupt gzip stream: {e}")))?;
    if out.len() as u64 > limit {
        return Err(too_big("decompresses to"));
    }
    Ok(out)
}

/// Checks an IDX file's magic number, then that its header is complete.
fn check_idx_header(path: &Path, b: &[u8], magic: u32, header: usize, what: &str) -> Result<()> {
    let found = if b.len() >= 4 { be_u32(b, 0) } else { 0 };
    if found != magic {
        return Err(CoreError::data(
            path,
            format!("wrong magic number {found:#010x}, expected {magic:#010x} (IDX {what})"),
        ));
    }
    if b.len() < header {
        return Err(CoreError::data(
            path,
            format!("too short for an IDX {what} header ({header} bytes)"),
        ));
    }
    Ok(())
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads an IDX image file (magic `0x00000803`): returns (rows, cols, pixels).
///
/// The header's sizes are checked against the bytes that follow it (in
/// 64-bit arithmetic, so no product overflows) before anything is sliced.
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let mut b = read_maybe_gzip(path)?;
    check_idx_header(path, &b, 0x0803, 16, "images")?;
    let (n, rows, cols) = (be_u32(&b, 4), be_u32(&b, 8), be_u32(&b, 12));
    if n == 0 || rows == 0 || cols == 0 {
        return Err(CoreError::data(
            path,
            format!("header announces {n} images of {rows}x{cols}: holds no images"),
        ));
    }
    // Each factor is below 2^32 and the first product at most 2^64 - 2^33 + 1;
    // the second can overflow, which `checked_mul` reports.
    let want = (u64::from(n) * u64::from(rows)).checked_mul(u64::from(cols));
    let have = (b.len() - 16) as u64;
    if want != Some(have) {
        let want = want.map_or_else(|| "more than 2^64".to_string(), |w| w.to_string());
        return Err(CoreError::data(
            path,
            format!(
                "header announces {n} images of {rows}x{cols} ({want} bytes) but the file holds {have} bytes of pixels (truncated or corrupt)"
            ),
        ));
    }
    b.drain(..16);
    Ok((rows as usize, cols as usize, b))
}

/// Reads an IDX label file (magic `0x00000801`).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let mut b = read_maybe_gzip(path)?;
    check_idx_header(path, &b, 0x0801, 8, "labels")?;
    let n = be_u32(&b, 4) as usize;
    if b.len() - 8 != n {
        return Err(CoreError::data(
            path,
            format!(
                "header announces {n} labels but the file holds {} (truncated or corrupt)",
                b.len() - 8
            ),
        ));
    }
    b.drain(..8);
    Ok(b)
}

/// Finds `name` or `name.gz` in `dir`.
pub(crate) fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(CoreError::data(
        dir.join(name),
        format!(
            "not found (looked for `{name}` and `{name}.gz` in {})",
            dir.display()
        ),
    ))
}

pub(crate) fn check_labels(path: &Path, labels: &[u8], classes: usize) -> Result<()> {
    if let Some(pos) = labels.iter().position(|&l| l as usize >= classes) {
        return Err(CoreError::data(
            path,
            format!(
                "label {} at index {pos} is out of range 0..{classes}",
                labels[pos]
            ),
        ));
    }
    Ok(())
}

/// Loads one split of an IDX dataset (MNIST layout) from `dir`: `prefix` is
/// `train` or `t10k`. Returns the images file's path with the split.
fn load_idx_split(dir: &Path, prefix: &str) -> Result<(PathBuf, Dataset)> {
    let img_path = find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lbl_path = find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (rows, cols, pixels) = read_idx_images(&img_path)?;
    let labels = read_idx_labels(&lbl_path)?;
    // `read_idx_images` guarantees rows, cols > 0 and a whole number of images.
    let images = pixels.len() / (rows * cols);
    if labels.len() != images {
        return Err(CoreError::data(
            &lbl_path,
            format!(
                "{} labels for {images} images in {}",
                labels.len(),
                img_path.display()
            ),
        ));
    }
    check_labels(&lbl_path, &labels, 10)?;
    let split = Dataset {
        pixels,
        labels,
        shape: InputShape {
            channels: 1,
            height: rows,
            width: cols,
        },
        classes: 10,
        pixel_max: 255.0,
    };
    Ok((img_path, split))
}

const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;

/// Reads CIFAR-10 binary batch files (records of 1 label byte + 3072 pixel
/// bytes, channel-major) and concatenates them.
pub fn read_cifar10_batches(files: &[PathBuf]) -> Result<Dataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let b = read_maybe_gzip(path)?;
        if b.is_empty() || b.len() % CIFAR_RECORD != 0 {
            return Err(CoreError::data(
                path,
                format!("size {} is not a whole number of CIFAR-10 records ({CIFAR_RECORD} bytes each): truncated or not a CIFAR-10 batch", b.len()),
            ));
        }
        for rec in b.chunks_exact(CIFAR_RECORD) {
            labels.push(rec[0]);
            pixels.extend_from_slice(&rec[1..]);
        }
        check_labels(path, &labels, 10)?;
    }
    Ok(Dataset {
        pixels,
        labels,
        shape: InputShape {
            channels: 3,
            height: 32,
            width: 32,
        },
        classes: 10,
        pixel_max: 255.0,
    })
}

/// Reads the UCI optical digits CSV: 64 values in 0..=16 then the label, no header.
pub fn read_digits_csv(path: &Path) -> Result<Dataset> {
    let text = String::from_utf8(read_maybe_gzip(path)?)
        .map_err(|_| CoreError::data(path, "not UTF-8 text"))?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let values: Vec<&str> = line.split(',').map(str::trim).collect();
        if values.len() != 65 {
            return Err(CoreError::data(
                path,
                format!(
                    "line {}: {} fields, expected 65 (64 pixels and a label)",
                    i + 1,
                    values.len()
                ),
            ));
        }
        for (j, v) in values.iter().enumerate() {
            let x: f64 = v.parse().map_err(|_| {
                CoreError::data(
                    path,
                    format!("line {}: field {} `{v}` is not a number", i + 1, j + 1),
                )
            })?;
            let limit = if j == 64 { 9.0 } else { 16.0 };
            if !(0.0..=limit).contains(&x) || x.fract() != 0.0 {
                return Err(CoreError::data(
                    path,
                    format!(
                        "line {}: field {} = {v} is outside 0..={limit}",
                        i + 1,
                        j + 1
                    ),
                ));
            }
            if j == 64 {
                labels.push(x as u8);
            } else {
                pixels.push(x as u8);
            }
        }
    }
    if labels.is_empty() {
        return Err(CoreError::data(path, "holds no images"));
    }
    Ok(Dataset {
        pixels,
        labels,
        shape: InputShape {
            channels: 1,
            height: 8,
            width: 8,
        },
        classes: 10,
        pixel_max: 16.0,
    })
}

/// Loads the training and test splits of `name` from `dir`.
///
/// Layouts: MNIST and Fashion-MNIST as the four IDX files (gzip or not);
/// CIFAR-10 as `data_batch_1..5.bin` and `test_batch.bin`; digits as
/// `digits.csv[.gz]`, of which a seeded 20% becomes the test split.
pub fn load_dataset(name: DatasetName, dir: &Path, seed: u64) -> Result<Splits> {
    if !dir.is_dir() {
        return Err(CoreError::data(
            dir,
            format!("is not a directory (the {name} data set was expected here)"),
        ));
    }
    match name {
        DatasetName::Mnist | DatasetName::FashionMnist => {
            let (train_path, train) = load_idx_split(dir, "train")?;
            let (test_path, test) = load_idx_split(dir, "t10k")?;
            check_same_shape(&train_path, &train, &test_path, &test)?;
            Ok(Splits { train, test })
        }
        DatasetName::Cifar10 => {
            let train: Vec<PathBuf> = (1..=5)
                .map(|i| find_file(dir, &format!("data_batch_{i}.bin")))
                .collect::<Result<_>>()?;
            Ok(Splits {
                train: read_cifar10_batches(&train)?,
                test: read_cifar10_batches(&[find_file(dir, "test_batch.bin")?])?,
            })
        }
        DatasetName::Digits => {
            let all = read_digits_csv(&find_file(dir, "digits.csv")?)?;
            let (train, test) = all.split(0.2, seed);
            Ok(Splits { train, test })
        }
    }
}

/// A test split must hold images of the training split's size: a model
/// trained on one cannot be evaluated on the other.
fn check_same_shape(
    train_path: &Path,
    train: &Dataset,
    test_path: &Path,
    test: &Dataset,
) -> Result<()> {
    let (a, b) = (train.shape, test.shape);
    if a == b {
        return Ok(());
    }
    Err(CoreError::data(
        test_path,
        format!(
            "test images are {}x{}x{} but the training images in {} are {}x{}x{}: both splits must have one image size",
            b.channels,
            b.height,
            b.width,
            train_path.display(),
            a.channels,
            a.height,
            a.width
        ),
    ))
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image_len(&self) -> usize {
        self.shape.channels * self.shape.height * self.shape.width
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let n = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * n..(i + 1) * n]);
        }
        Dataset {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone_meta()
        }
    }

    fn clone_meta(&self) -> Dataset {
        Dataset {
            pixels: Vec::new(),
            labels: Vec::new(),
            shape: self.shape,
            classes: self.classes,
            pixel_max: self.pixel_max,
        }
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn head(&self, n: usize) -> Dataset {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.select(&idx)
    }

    /// Splits off a seeded random `fraction` as a second set: (rest, held out).
    pub fn split(&self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(seed));
        let held = ((self.len() as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
        let (h, rest) = idx.split_at(held);
        (self.select(rest), self.select(h))
    }

    /// Number of images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    /// Per-channel mean and standard deviation of the pixels scaled to [0, 1].
    pub fn channel_stats(&self) -> Normalization {
        let (c, hw) = (self.shape.channels, self.shape.height * self.shape.width);
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for img in self.pixels.chunks_exact(c * hw) {
            for ch in 0..c {
                for &p in &img[ch * hw..(ch + 1) * hw] {
                    let v = f64::from(p) / f64::from(self.pixel_max);
                    sum[ch] += v;
                    sq[ch] += v * v;
                }
            }
        }
        let count = (self.len() * hw).max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, &m)| ((s / count - f64::from(m).powi(2)).max(1e-12).sqrt()) as f32)
            .collect();
        Normalization { mean, std }
    }
}

/// Per-channel normalisation `(x / pixel_max - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of each channel in [0, 1] units.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel.
    pub std: Vec<f32>,
}

/// Data augmentation applied to training batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Augment {
    /// Random crop after zero padding by this many pixels (0 = none).
    pub crop_padding: usize,
    /// Random horizontal flip with probability 1/2.
    pub horizontal_flip: bool,
}

impl Augment {
    /// The standard CIFAR augmentation: pad 4, random 32x32 crop, random flip.
    pub fn cifar() -> Self {
        Augment {
            crop_padding: 4,
            horizontal_flip: true,
        }
    }
}

/// Turns a dataset into normalised tensors, batch by batch.
#[derive(Debug, Clone)]
pub struct Batcher {
    /// Normalisation applied to every image.
    pub normalization: Normalization,
    /// Augmentation for training batches.
    pub augment: Augment,
}

impl Batcher {
    /// Builds the batch of `indices`: images (`n x C x H x W`, f32) and labels (u32).
    /// `rng` drives augmentation; `None` disables it (evaluation).
    pub fn batch(
        &self,
        data: &Dataset,
        indices: &[usize],
        rng: Option<&mut StdRng>,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let InputShape {
            channels: c,
            height: h,
            width: w,
        } = data.shape;
        let n = c * h * w;
        let mut out = vec![0f32; indices.len() * n];
        let scale: Vec<f32> = self
            .normalization
            .std
            .iter()
            .map(|s| 1.0 / (s * data.pixel_max))
            .collect();
        let shift: Vec<f32> = self
            .normalization
            .mean
            .iter()
            .zip(&self.normalization.std)
            .map(|(m, s)| -m / s)
            .collect();
        let mut rng = rng;
        for (b, &i) in indices.iter().enumerate() {
            let img = &data.pixels[i * n..(i + 1) * n];
            let dst = &mut out[b * n..(b + 1) * n];
            let (dy, dx, flip) = match rng.as_deref_mut() {
                Some(r) if self.augment.crop_padding > 0 || self.augment.horizontal_flip => {
                    let p = self.augment.crop_padding as i64;
                    let dy = if p > 0 {
                        r.random_range(-p..=p) as isize
                    } else {
                        0
                    };
                    let dx = if p > 0 {
                        r.random_range(-p..=p) as isize
                    } else {
                        0
                    };
                    (dy, dx, self.augment.horizontal_flip && r.random_bool(0.5))
                }
                _ => (0, 0, false),
            };
            for ch in 0..c {
                let zero = shift[ch];
                for y in 0..h {
                    for x in 0..w {
                        let sx = if flip { w - 1 - x } else { x } as isize + dx;
                        let sy = y as isize + dy;
                        dst[(ch * h + y) * w + x] =
                            if sx >= 0 && sy >= 0 && (sx as usize) < w && (sy as usize) < h {
                                f32::from(img[(ch * h + sy as usize) * w + sx as usize]) * scale[ch]
                                    + shift[ch]
                            } else {
                                zero
                            };
                    }
                }
            }
        }
        let x = Tensor::from_vec(out, (indices.len(), c, h, w), device)?;
        let y: Vec<u32> = indices.iter().map(|&i| u32::from(data.labels[i])).collect();
        let y = Tensor::from_vec(y, indices.len(), device)?;
        Ok((x, y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A gzip stream that inflates past the limit is refused at the limit,
    /// without inflating the rest (here 1 MB of zeros against 64 KB).
    #[test]
    fn a_gzip_bomb_stops_at_the_size_limit() {
        let dir = std::env::temp_dir().join(format!("dsnn-data-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bomb.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let e = read_bounded(&path, 1 << 16).unwrap_err().to_string();
        assert!(
            e.contains("bomb.gz") && e.contains("decompresses to more than 65536 bytes"),
            "{e}"
        );
        assert_eq!(read_bounded(&path, 1 << 20).unwrap().len(), 1 << 20);
        // A raw file over the limit is refused before it is read.
        std::fs::write(&path, vec![7u8; 1000]).unwrap();
        let e = read_bounded(&path, 999).unwrap_err().to_string();
        assert!(e.contains("holds 1000 bytes"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
