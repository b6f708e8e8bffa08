//! Decoding PNG and JPEG files into a [`Dataset`]: resizing to one size
//! (centre crop, pad or stretch), grey or colour channels, and what to do
//! with a file that does not decode.

use super::Dataset;
use crate::backbone::InputShape;
use crate::error::{CoreError, Result};
use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView, ImageReader};
use rayon::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};

/// How an image whose aspect or size differs from the target is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeMode {
    /// Scale so that the image covers the target, then cut the centre
    /// (no borders, loses the edges of the longer side).
    #[default]
    Crop,
    /// Scale so that the image fits inside the target, then pad the rest
    /// with black, centred (keeps everything, adds borders).
    Pad,
    /// Scale each side to the target independently (distorts the aspect).
    Stretch,
}

impl std::str::FromStr for ResizeMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "crop" => Ok(ResizeMode::Crop),
            "pad" => Ok(ResizeMode::Pad),
            "stretch" => Ok(ResizeMode::Stretch),
            _ => Err(format!(
                "unknown resize mode `{s}` (allowed: crop, pad, stretch)"
            )),
        }
    }
}

impl fmt::Display for ResizeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResizeMode::Crop => "crop",
            ResizeMode::Pad => "pad",
            ResizeMode::Stretch => "stretch",
        })
    }
}

/// How image files become tensors of one shape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageOptions {
    /// Target `(height, width)`; `None` keeps the images' own size, which
    /// all of them must then share.
    pub size: Option<(usize, usize)>,
    /// How images of another size or aspect are fitted.
    pub resize: ResizeMode,
    /// 1 (grey) or 3 (RGB); `None`: 3 when any image has colour, else 1.
    pub channels: Option<usize>,
    /// Skip files that do not decode, with a warning naming each, instead
    /// of failing on the first.
    pub skip_unreadable: bool,
}

impl ImageOptions {
    /// The settings as text, for the cache key: two option sets with the
    /// same text give the same tensors.
    pub fn key_text(&self) -> String {
        format!(
            "size={}\nresize={}\nchannels={}\nskip_unreadable={}\n",
            self.size
                .map_or_else(|| "own".to_string(), |(h, w)| format!("{h}x{w}")),
            self.resize,
            self.channels
                .map_or_else(|| "auto".to_string(), |c| c.to_string()),
            self.skip_unreadable
        )
    }
}

/// One image file and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledFile {
    /// The file.
    pub path: PathBuf,
    /// Its class, an index into the class names.
    pub label: u8,
}

/// A file left out because it did not decode (with `skip_unreadable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it could not be read.
    pub reason: String,
}

/// Largest side dsnn resizes to: a bigger target is a typo, and would
/// need gigabytes per thousand images.
pub const MAX_IMAGE_SIDE: usize = 1024;

/// Reads an image's size from its header, without decoding it.
fn dimensions(path: &Path) -> Result<(u32, u32)> {
    ImageReader::open(path)
        .map_err(|e| CoreError::Io {
            path: path.to_path_buf(),
            source: e,
        })?
        .with_guessed_format()
        .map_err(|e| CoreError::Io {
            path: path.to_path_buf(),
            source: e,
        })?
        .into_dimensions()
        .map_err(|e| CoreError::data(path, format!("not a readable PNG or JPEG image: {e}")))
}

/// Decodes one file (format from its contents, not its name).
fn decode(path: &Path) -> Result<DynamicImage> {
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| CoreError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    reader
        .decode()
        .map_err(|e| CoreError::data(path, format!("not a readable PNG or JPEG image: {e}")))
}

/// Fits `img` to `height x width` with `mode`.
pub fn fit(img: &DynamicImage, height: u32, width: u32, mode: ResizeMode) -> DynamicImage {
    let (w, h) = img.dimensions();
    if (w, h) == (width, height) {
        return img.clone();
    }
    let filter = FilterType::Triangle;
    match mode {
        ResizeMode::Stretch => img.resize_exact(width, height, filter),
        ResizeMode::Crop => {
            let scale = f64::max(
                f64::from(width) / f64::from(w),
                f64::from(height) / f64::from(h),
            );
            let sw = ((f64::from(w) * scale).round() as u32).max(width);
            let sh = ((f64::from(h) * scale).round() as u32).max(height);
            let scaled = if (sw, sh) == (w, h) {
                img.clone()
            } else {
                img.resize_exact(sw, sh, filter)
            };
            scaled.crop_imm((sw - width) / 2, (sh - height) / 2, width, height)
        }
        ResizeMode::Pad => {
            let scale = f64::min(
                f64::from(width) / f64::from(w),
                f64::from(height) / f64::from(h),
            );
            let sw = ((f64::from(w) * scale).round() as u32).clamp(1, width);
            let sh = ((f64::from(h) * scale).round() as u32).clamp(1, height);
            let scaled = img.resize_exact(sw, sh, filter).to_rgb8();
            let mut canvas = image::RgbImage::new(width, height);
            image::imageops::overlay(
                &mut canvas,
                &scaled,
                i64::from((width - sw) / 2),
                i64::from((height - sh) / 2),
            );
            // Keep grey images grey: the padding is black either way.
            if img.color().has_color() {
                DynamicImage::ImageRgb8(canvas)
            } else {
                DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(canvas).to_luma8())
            }
        }
    }
}

/// The target size: the given one, or the images' own when they all share
/// it (a clear error naming two files of different sizes otherwise).
fn target_size(files: &[LabelledFile], opts: &ImageOptions) -> Result<(u32, u32)> {
    if let Some((h, w)) = opts.size {
        return Ok((h as u32, w as u32));
    }
    let sizes: Vec<Option<(u32, u32)>> = files
        .par_iter()
        .map(|f| match dimensions(&f.path) {
            Ok(d) => Ok(Some(d)),
            Err(_) if opts.skip_unreadable => Ok(None),
            Err(e) => Err(e),
        })
        .collect::<Result<_>>()?;
    let mut first: Option<(usize, (u32, u32))> = None;
    for (i, size) in sizes.iter().enumerate() {
        let Some((w, h)) = *size else { continue };
        match first {
            None => first = Some((i, (w, h))),
            Some((j, (fw, fh))) if (fw, fh) != (w, h) => {
                return Err(CoreError::data(
                    &files[i].path,
                    format!(
                        "is {w}x{h} (width x height) but {} is {fw}x{fh}: images of mixed sizes need \
                         `size` (for example `size = 32` or `size = [32, 32]`) to be resized to one",
                        files[j].path.display()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    match first {
        Some((_, (w, h))) => Ok((h, w)),
        None => Err(CoreError::data(
            files.first().map_or_else(PathBuf::new, |f| f.path.clone()),
            "no readable image",
        )),
    }
}

/// Images decoded from a list of files.
#[derive(Debug, Clone)]
pub struct DecodedImages {
    /// The images, in the order of the files they come from.
    pub dataset: Dataset,
    /// For each image, the index of its file in the list decoded.
    pub source: Vec<usize>,
    /// Files left out (with `skip_unreadable`).
    pub skipped: Vec<SkippedFile>,
}

/// Decodes `files` into one data set of `classes` classes, every image
/// fitted to one size. Files that do not decode are an error naming the
/// file, or (with `skip_unreadable`) skipped and returned.
pub fn decode_images(
    files: &[LabelledFile],
    classes: usize,
    opts: &ImageOptions,
) -> Result<DecodedImages> {
    let (height, width) = target_size(files, opts)?;
    if height == 0
        || width == 0
        || height as usize > MAX_IMAGE_SIDE
        || width as usize > MAX_IMAGE_SIDE
    {
        return Err(CoreError::config(
            "size",
            format!("{height}x{width} is out of range (allowed: sides 1..={MAX_IMAGE_SIDE})"),
        ));
    }
    let decoded: Vec<std::result::Result<(DynamicImage, u8), SkippedFile>> = files
        .par_iter()
        .map(|f| match decode(&f.path) {
            Ok(img) => Ok(Ok((fit(&img, height, width, opts.resize), f.label))),
            Err(e) if opts.skip_unreadable => Ok(Err(SkippedFile {
                path: f.path.clone(),
                reason: match e {
                    CoreError::Data { reason, .. } => reason,
                    other => other.to_string(),
                },
            })),
            Err(e) => Err(e),
        })
        .collect::<Result<_>>()?;
    let mut images = Vec::with_capacity(decoded.len());
    let mut source = Vec::with_capacity(decoded.len());
    let mut skipped = Vec::new();
    for (i, d) in decoded.into_iter().enumerate() {
        match d {
            Ok(x) => {
                images.push(x);
                source.push(i);
            }
            Err(s) => {
                log::warn!("skipping {}: {}", s.path.display(), s.reason);
                skipped.push(s);
            }
        }
    }
    let channels = opts.channels.unwrap_or_else(|| {
        if images.iter().any(|(img, _)| img.color().has_color()) {
            3
        } else {
            1
        }
    });
    let (h, w) = (height as usize, width as usize);
    let mut pixels = Vec::with_capacity(images.len() * channels * h * w);
    let mut labels = Vec::with_capacity(images.len());
    for (img, label) in images {
        if channels == 1 {
            pixels.extend_from_slice(img.to_luma8().as_raw());
        } else {
            let rgb = img.to_rgb8();
            let raw = rgb.as_raw();
            for c in 0..3 {
                pixels.extend(raw.iter().skip(c).step_by(3));
            }
        }
        labels.push(label);
    }
    Ok(DecodedImages {
        dataset: Dataset {
            pixels,
            labels,
            shape: InputShape {
                channels,
                height: h,
                width: w,
            },
            classes,
            pixel_max: 255.0,
        },
        source,
        skipped,
    })
}
