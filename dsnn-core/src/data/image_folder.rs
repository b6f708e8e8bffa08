//! Image data sets kept as files: a folder of one sub-folder per class
//! (Caltech101's layout, optionally under `train/` and `test/`), and Tiny
//! ImageNet's layout. Both are decoded by [`super::images`] and cached by
//! [`super::image_cache`].

use super::image_cache::{fnv1a64, read_cache, write_cache, CacheRead, CachedImages};
use super::images::{decode_images, ImageOptions, LabelledFile, SkippedFile};
use super::{Dataset, Splits};
use crate::error::{CoreError, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Most classes a data set may have (labels are bytes).
pub const MAX_CLASSES: usize = 256;

/// The name of the cache folder dsnn makes inside an image folder when no
/// other cache directory is given.
pub const DEFAULT_CACHE_DIR: &str = ".dsnn-cache";

/// The image files of a data set, by class and split, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSource {
    /// The data set's folder.
    pub root: PathBuf,
    /// Which layout it was read as (`image_folder`, `tiny_imagenet`), for
    /// the cache key.
    pub layout: String,
    /// Class names, by label.
    pub classes: Vec<String>,
    /// Named splits and their files: `train` and `test`, or `all` when the
    /// folder has no split of its own.
    pub parts: Vec<(String, Vec<LabelledFile>)>,
}

/// Whether `path` names a PNG or JPEG file by its extension (hidden files
/// are not images).
pub fn is_image_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'));
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    !hidden && matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) && path.is_file()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CoreError + '_ {
    move |e| CoreError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// The entries of `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        out.push(entry.map_err(io_err(dir))?.path());
    }
    out.sort();
    Ok(out)
}

/// The visible sub-folders of `dir` (hidden ones, such as the cache, are
/// not classes).
fn class_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect())
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The PNG and JPEG files of one class folder; an error naming the folder
/// when it has none.
fn class_files(dir: &Path, label: u8) -> Result<Vec<LabelledFile>> {
    let entries = sorted_entries(dir)?;
    let files: Vec<LabelledFile> = entries
        .iter()
        .filter(|p| is_image_file(p))
        .map(|p| LabelledFile {
            path: p.clone(),
            label,
        })
        .collect();
    let others = entries.len() - files.len();
    if files.is_empty() {
        return Err(CoreError::data(
            dir,
            format!(
                "class folder holds no PNG or JPEG files (.png, .jpg, .jpeg){}: add images or remove the folder",
                if others > 0 { format!(", only {others} other entries") } else { String::new() }
            ),
        ));
    }
    if others > 0 {
        log::info!(
            "{}: ignoring {others} entries that are not PNG or JPEG files",
            dir.display()
        );
    }
    Ok(files)
}

/// The class folders of `dir`, checked: at least two, at most 256.
fn checked_classes(dir: &Path) -> Result<Vec<PathBuf>> {
    let classes = class_dirs(dir)?;
    match classes.len() {
        0 => {
            let images = sorted_entries(dir)?
                .iter()
                .filter(|p| is_image_file(p))
                .count();
            Err(CoreError::data(
                dir,
                if images > 0 {
                    format!("holds {images} images but no class folders: put each class's images in a sub-folder named after the class")
                } else {
                    "holds no class folders (one sub-folder of PNG or JPEG images per class)"
                        .to_string()
                },
            ))
        }
        1 => Err(CoreError::data(
            dir,
            format!(
                "holds one class folder (`{}`): classification needs at least two classes",
                dir_name(&classes[0])
            ),
        )),
        n if n > MAX_CLASSES => Err(CoreError::data(
            dir,
            format!("holds {n} class folders, more than the {MAX_CLASSES} dsnn supports"),
        )),
        _ => Ok(classes),
    }
}

/// Reads the layout of an image folder without decoding anything: one
/// sub-folder of PNG/JPEG files per class (class names are the folder
/// names, sorted), or `train/` and `test/` folders of that layout.
///
/// Errors name the folder: not a folder, no or one class folder, an empty
/// class folder, a test class the training split lacks, only one of
/// `train/` and `test/`.
pub fn scan_image_folder(root: &Path) -> Result<ImageSource> {
    if !root.is_dir() {
        return Err(CoreError::data(
            root,
            "is not a directory (an image folder was expected here)",
        ));
    }
    let (train_dir, test_dir) = (root.join("train"), root.join("test"));
    let parts = match (train_dir.is_dir(), test_dir.is_dir()) {
        (true, true) => vec![("train", train_dir), ("test", test_dir)],
        (false, false) => vec![("all", root.to_path_buf())],
        (true, false) | (false, true) => {
            return Err(CoreError::data(
                root,
                "holds `train/` or `test/` but not both: a folder with its own split needs both (each with one sub-folder per class); a folder without one has only class folders",
            ))
        }
    };
    let classes: Vec<String> = checked_classes(&parts[0].1)?
        .iter()
        .map(|p| dir_name(p))
        .collect();
    let mut out = Vec::new();
    for (name, dir) in parts {
        let mut files = Vec::new();
        let dirs = if name == "test" {
            class_dirs(&dir)?
        } else {
            checked_classes(&dir)?
        };
        if dirs.is_empty() {
            return Err(CoreError::data(&dir, "holds no class folders"));
        }
        for d in dirs {
            let class = dir_name(&d);
            let Some(label) = classes.iter().position(|c| *c == class) else {
                return Err(CoreError::data(
                    &d,
                    format!("class `{class}` of the test split has no folder in the training split ({})", root.join("train").display()),
                ));
            };
            files.extend(class_files(&d, label as u8)?);
        }
        out.push((name.to_string(), files));
    }
    Ok(ImageSource {
        root: root.to_path_buf(),
        layout: "image_folder".into(),
        classes,
        parts: out,
    })
}

/// Reads Tiny ImageNet's layout without decoding anything: `wnids.txt`
/// (the classes, taken sorted), `train/<wnid>/images/*.JPEG`, and
/// `val/images/*` labelled by `val/val_annotations.txt` (file, wnid, box),
/// which becomes the test split (the official test images have no labels).
pub fn scan_tiny_imagenet(root: &Path) -> Result<ImageSource> {
    if !root.is_dir() {
        return Err(CoreError::data(
            root,
            "is not a directory (Tiny ImageNet was expected here)",
        ));
    }
    let wnids_path = root.join("wnids.txt");
    let text = std::fs::read_to_string(&wnids_path).map_err(io_err(&wnids_path))?;
    let set: BTreeSet<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if set.len() < 2 || set.len() > MAX_CLASSES {
        return Err(CoreError::data(
            &wnids_path,
            format!("lists {} classes (allowed: 2..={MAX_CLASSES})", set.len()),
        ));
    }
    let classes: Vec<String> = set.into_iter().collect();
    let mut train = Vec::new();
    for (label, wnid) in classes.iter().enumerate() {
        let dir = root.join("train").join(wnid).join("images");
        if !dir.is_dir() {
            return Err(CoreError::data(
                &dir,
                format!("not found: class `{wnid}` of wnids.txt needs its training images here"),
            ));
        }
        train.extend(class_files(&dir, label as u8)?);
    }
    let ann_path = root.join("val").join("val_annotations.txt");
    let text = std::fs::read_to_string(&ann_path).map_err(io_err(&ann_path))?;
    let mut test = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if fields.len() < 2 {
            return Err(CoreError::data(
                &ann_path,
                format!(
                    "line {}: expected tab-separated file name and wnid, got `{line}`",
                    i + 1
                ),
            ));
        }
        let Some(label) = classes.iter().position(|c| c == fields[1]) else {
            return Err(CoreError::data(
                &ann_path,
                format!(
                    "line {}: wnid `{}` is not in {}",
                    i + 1,
                    fields[1],
                    wnids_path.display()
                ),
            ));
        };
        let path = root.join("val").join("images").join(fields[0]);
        if !path.is_file() {
            return Err(CoreError::data(
                &ann_path,
                format!("line {}: image {} not found", i + 1, path.display()),
            ));
        }
        test.push(LabelledFile {
            path,
            label: label as u8,
        });
    }
    if test.is_empty() {
        return Err(CoreError::data(&ann_path, "lists no validation images"));
    }
    Ok(ImageSource {
        root: root.to_path_buf(),
        layout: "tiny_imagenet".into(),
        classes,
        parts: vec![("train".into(), train), ("test".into(), test)],
    })
}

/// Where the cache goes and whether there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSetting {
    /// No cache: every load decodes.
    Off,
    /// The cache folder (created when missing).
    In(PathBuf),
}

/// What the cache did during a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Caching is off.
    Off,
    /// The images came from this cache file; nothing was decoded.
    Hit(PathBuf),
    /// The images were decoded and this cache file written (`rebuilt`
    /// says why an existing one was not used).
    Written {
        /// The cache file.
        path: PathBuf,
        /// Why an existing file was replaced (stale or corrupt), if one was.
        rebuilt: Option<String>,
    },
    /// The images were decoded but the cache could not be written.
    Unwritable {
        /// The cache file.
        path: PathBuf,
        /// The error.
        reason: String,
    },
}

/// Decoded images of an [`ImageSource`].
#[derive(Debug, Clone)]
pub struct LoadedImages {
    /// Class names, by label.
    pub classes: Vec<String>,
    /// The source's splits, decoded.
    pub parts: Vec<(String, Dataset)>,
    /// Files left out (with `skip_unreadable`).
    pub skipped: Vec<SkippedFile>,
    /// What the cache did.
    pub cache: CacheOutcome,
}

/// The folder's canonical path, so that one folder reached by two paths
/// (relative, absolute, through a link) shares one cache.
fn canonical_root(source: &ImageSource) -> PathBuf {
    std::fs::canonicalize(&source.root).unwrap_or_else(|_| source.root.clone())
}

/// The cache key: the settings, the layout and every file's split, label,
/// size and modification time.
fn cache_key(source: &ImageSource, opts: &ImageOptions) -> String {
    let mut key = format!(
        "dsnn image cache\nlayout={}\nroot={}\n{}classes={}\n",
        source.layout,
        canonical_root(source).display(),
        opts.key_text(),
        source.classes.join("/")
    );
    for (name, files) in &source.parts {
        key.push_str(&format!("part {name} {}\n", files.len()));
        for f in files {
            let (len, mtime) = match std::fs::metadata(&f.path) {
                Ok(m) => (
                    m.len(),
                    m.modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos()),
                ),
                Err(_) => (u64::MAX, 0),
            };
            let rel = f.path.strip_prefix(&source.root).unwrap_or(&f.path);
            key.push_str(&format!("{}\t{len}\t{mtime}\t{}\n", f.label, rel.display()));
        }
    }
    key
}

/// The cache file for `source` and `opts` in `dir`: one file per settings,
/// so a change of files makes it stale (and rebuilt) rather than leaving
/// old files behind.
pub fn cache_file(dir: &Path, source: &ImageSource, opts: &ImageOptions) -> PathBuf {
    let id = format!(
        "{}\n{}\n{}",
        source.layout,
        canonical_root(source).display(),
        opts.key_text()
    );
    dir.join(format!(
        "{}-{:016x}.bin",
        source.layout,
        fnv1a64(id.as_bytes())
    ))
}

/// Decodes `source` with `opts`, through the cache when there is one: a
/// valid cache file is read instead of decoding; a stale or corrupt one is
/// rebuilt with a warning; a cache that cannot be written is a warning.
pub fn load_images(
    source: &ImageSource,
    opts: &ImageOptions,
    cache: &CacheSetting,
) -> Result<LoadedImages> {
    let cache_path = match cache {
        CacheSetting::Off => None,
        CacheSetting::In(dir) => Some(cache_file(dir, source, opts)),
    };
    let key = cache_key(source, opts);
    let mut rebuilt = None;
    if let Some(path) = &cache_path {
        let (cached, status) = read_cache(path, &key);
        match (cached, status) {
            (Some(c), _) => {
                let n: usize = c.parts.iter().map(|(_, d)| d.len()).sum();
                log::info!(
                    "image cache hit: {} ({n} images of {} classes read without decoding)",
                    path.display(),
                    c.classes.len()
                );
                if !c.skipped.is_empty() {
                    log::warn!(
                        "{} files of {} were skipped as unreadable when the cache was built (first: {})",
                        c.skipped.len(),
                        source.root.display(),
                        c.skipped[0].path.display()
                    );
                }
                return Ok(LoadedImages {
                    classes: c.classes,
                    parts: c.parts,
                    skipped: c.skipped,
                    cache: CacheOutcome::Hit(path.clone()),
                });
            }
            (None, CacheRead::Missing) => {}
            (None, CacheRead::Stale) => {
                let why = "built for other files or settings".to_string();
                log::warn!(
                    "image cache {} is stale ({why}): rebuilding it",
                    path.display()
                );
                rebuilt = Some(why);
            }
            (None, CacheRead::Corrupt(why)) => {
                log::warn!(
                    "image cache {} is corrupt ({why}): rebuilding it",
                    path.display()
                );
                rebuilt = Some(format!("corrupt: {why}"));
            }
            (None, CacheRead::Hit) => unreachable!("a hit carries its images"),
        }
    }
    let all: Vec<LabelledFile> = source
        .parts
        .iter()
        .flat_map(|(_, f)| f.iter().cloned())
        .collect();
    let total: usize = all.len();
    log::info!("decoding {total} images of {}", source.root.display());
    let decoded = decode_images(&all, source.classes.len(), opts)?;
    // Cut the decoded images back into the source's splits.
    let mut parts = Vec::new();
    let mut start = 0;
    for (name, files) in &source.parts {
        let end = start + files.len();
        let idx: Vec<usize> = decoded
            .source
            .iter()
            .enumerate()
            .filter(|(_, &s)| s >= start && s < end)
            .map(|(i, _)| i)
            .collect();
        if idx.is_empty() {
            return Err(CoreError::data(
                &source.root,
                format!(
                    "no readable image in the `{name}` split ({} files, all skipped)",
                    files.len()
                ),
            ));
        }
        parts.push((name.clone(), decoded.dataset.select(&idx)));
        start = end;
    }
    let content = CachedImages {
        classes: source.classes.clone(),
        parts,
        skipped: decoded.skipped,
    };
    let outcome = match cache_path {
        None => CacheOutcome::Off,
        Some(path) => match write_cache(&path, &key, &content) {
            Ok(()) => {
                log::info!("wrote image cache {}", path.display());
                CacheOutcome::Written { path, rebuilt }
            }
            Err(e) => {
                log::warn!(
                    "could not write the image cache {}: {e} (the next load decodes again; set `cache_dir` to a writable folder)",
                    path.display()
                );
                CacheOutcome::Unwritable {
                    reason: e.to_string(),
                    path,
                }
            }
        },
    };
    Ok(LoadedImages {
        classes: content.classes,
        parts: content.parts,
        skipped: content.skipped,
        cache: outcome,
    })
}

/// A seeded split that holds out `fraction` of each class (at least one
/// image of every class with two or more): (rest, held out).
pub fn stratified_split(data: &Dataset, fraction: f64, seed: u64) -> (Dataset, Dataset) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut rest, mut held) = (Vec::new(), Vec::new());
    for class in 0..data.classes {
        let mut idx: Vec<usize> = (0..data.len())
            .filter(|&i| data.labels[i] as usize == class)
            .collect();
        idx.shuffle(&mut rng);
        let mut n = ((idx.len() as f64) * fraction).round() as usize;
        if n == 0 && idx.len() >= 2 && fraction > 0.0 {
            n = 1;
        }
        held.extend_from_slice(&idx[..n]);
        rest.extend_from_slice(&idx[n..]);
    }
    rest.sort_unstable();
    held.sort_unstable();
    (data.select(&rest), data.select(&held))
}

/// The training and test splits of loaded images: the source's own, or a
/// seeded stratified `test_fraction` of the whole folder as the test split.
pub fn into_splits(loaded: LoadedImages, test_fraction: f64, seed: u64) -> Result<Splits> {
    let mut parts = loaded.parts;
    if let Some(pos) = parts.iter().position(|(n, _)| n == "all") {
        let (_, all) = parts.swap_remove(pos);
        let (train, test) = stratified_split(&all, test_fraction, seed);
        return Ok(Splits { train, test });
    }
    let take = |parts: &mut Vec<(String, Dataset)>, name: &str| {
        parts
            .iter()
            .position(|(n, _)| n == name)
            .map(|p| parts.swap_remove(p).1)
            .ok_or_else(|| CoreError::data(PathBuf::new(), format!("no `{name}` split")))
    };
    let train = take(&mut parts, "train")?;
    let test = take(&mut parts, "test")?;
    Ok(Splits { train, test })
}
