//! The built-in data sets: MNIST, Fashion-MNIST (IDX), CIFAR-10 (binary
//! batches), the UCI digits (CSV), CIFAR-100 (binary), folders of PNG/JPEG
//! images and Tiny ImageNet, read by dsnn-core's loaders; the
//! Fashion-MNIST subset and the digits are bundled in `data/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dsnn_core::data::cifar100::{load_cifar100, Cifar100Label};
use dsnn_core::data::image_folder::{
    into_splits, load_images, scan_image_folder, scan_tiny_imagenet, CacheSetting, ImageSource,
    DEFAULT_CACHE_DIR,
};
use dsnn_core::data::images::{ImageOptions, ResizeMode, MAX_IMAGE_SIDE};
use dsnn_core::data::{load_dataset, Augment, DatasetName, Splits};
use serde::Deserialize;

use crate::registry::{DatasetFactory, Registry};
use crate::settings::{ConfigError, Section};

/// Registers `mnist`, `fashion-mnist`, `cifar10`, `digits`, `cifar100`,
/// `image-folder` and `tiny-imagenet`.
pub fn register(r: &mut Registry) {
    for name in [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Digits,
    ] {
        r.register_dataset(&name.to_string(), Arc::new(Builtin(name)));
    }
    r.register_dataset("cifar100", Arc::new(Cifar100));
    r.register_dataset("image-folder", Arc::new(Images(Layout::Folder)));
    r.register_dataset("tiny-imagenet", Arc::new(Images(Layout::TinyImagenet)));
}

/// The directory of the bundled copy of a data set, if dsnn ships one.
pub fn bundled_data_dir(dataset: DatasetName) -> Option<PathBuf> {
    let name = match dataset {
        DatasetName::FashionMnist => "fashion-mnist-small",
        DatasetName::Digits => "digits",
        _ => return None,
    };
    Some(crate::dsnn_objective::bundled_data_root().join(name))
}

struct Builtin(DatasetName);

impl DatasetFactory for Builtin {
    fn description(&self) -> String {
        match self.0 {
            DatasetName::Mnist => "MNIST handwritten digits, 28x28 grey (IDX files)",
            DatasetName::FashionMnist => {
                "Fashion-MNIST, 28x28 grey (IDX files; a 6,000-image subset is bundled)"
            }
            DatasetName::Cifar10 => "CIFAR-10, 32x32 colour (binary batches)",
            DatasetName::Digits => "UCI optical digits, 8x8 grey (CSV; bundled)",
        }
        .into()
    }

    fn bundled_dir(&self) -> Option<PathBuf> {
        bundled_data_dir(self.0)
    }

    fn default_backbone(&self) -> Option<String> {
        Some(
            match self.0 {
                DatasetName::Mnist | DatasetName::FashionMnist => "lenet5",
                DatasetName::Cifar10 => "resnet20",
                DatasetName::Digits => "digits_cnn",
            }
            .into(),
        )
    }

    fn load(&self, dir: &Path, _settings: &Section, seed: u64) -> Result<Splits, String> {
        load_dataset(self.0, dir, seed).map_err(|e| e.to_string())
    }

    fn augment(&self) -> Augment {
        if self.0 == DatasetName::Cifar10 {
            Augment::cifar()
        } else {
            Augment::default()
        }
    }
}

/// `[data]` settings of `cifar100`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cifar100Settings {
    #[serde(default)]
    label: Option<String>,
}

impl Cifar100Settings {
    fn read(settings: &Section) -> Result<Cifar100Label, ConfigError> {
        let s: Cifar100Settings = settings.parse()?;
        match s.label {
            None => Ok(Cifar100Label::Fine),
            Some(l) => l.parse().map_err(|e: String| {
                settings.error("label", format!("`{}.label`: {e}", settings.key()))
            }),
        }
    }
}

/// CIFAR-100 binary files; `label = "fine" | "coarse"`.
struct Cifar100;

impl DatasetFactory for Cifar100 {
    fn description(&self) -> String {
        "CIFAR-100, 32x32 colour (train.bin, test.bin; `label` = fine (100) or coarse (20))".into()
    }

    fn default_backbone(&self) -> Option<String> {
        Some("resnet20".into())
    }

    fn check(&self, settings: &Section) -> Result<(), ConfigError> {
        Cifar100Settings::read(settings).map(|_| ())
    }

    fn check_files(&self, dir: &Path, _settings: &Section) -> Result<(), String> {
        for name in ["train.bin", "test.bin"] {
            if !dir.join(name).is_file() && !dir.join(format!("{name}.gz")).is_file() {
                return Err(format!(
                    "{}: no `{name}` (nor `{name}.gz`): the CIFAR-100 binary version has `train.bin` and `test.bin`",
                    dir.display()
                ));
            }
        }
        Ok(())
    }

    fn load(&self, dir: &Path, settings: &Section, _seed: u64) -> Result<Splits, String> {
        let label = Cifar100Settings::read(settings).map_err(|e| e.to_string())?;
        load_cifar100(dir, label).map_err(|e| e.to_string())
    }

    fn augment(&self) -> Augment {
        Augment::cifar()
    }
}

/// The layouts of image files dsnn reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One sub-folder per class (optionally under `train/` and `test/`).
    Folder,
    /// Tiny ImageNet's `train/<wnid>/images`, `val/val_annotations.txt`.
    TinyImagenet,
}

/// `[data]` settings of the image data sets besides `size`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageKeys {
    #[serde(default)]
    resize: Option<String>,
    #[serde(default)]
    channels: Option<usize>,
    #[serde(default)]
    test_fraction: Option<f64>,
    #[serde(default)]
    cache: Option<bool>,
    #[serde(default)]
    cache_dir: Option<PathBuf>,
    #[serde(default)]
    skip_unreadable: Option<bool>,
}

/// The image data sets' settings, read and checked.
#[derive(Debug, Clone, PartialEq)]
struct ImageSettings {
    options: ImageOptions,
    test_fraction: f64,
    cache: bool,
    cache_dir: Option<PathBuf>,
}

impl ImageSettings {
    fn read(settings: &Section, layout: Layout) -> Result<Self, ConfigError> {
        let key = |k: &str| format!("{}.{k}", settings.key());
        let keys: ImageKeys = settings.without(&["size"]).parse()?;
        let size = match settings.get("size") {
            None => None,
            Some(s) => Some(read_size(&s, &key("size"))?),
        };
        let resize = match keys.resize {
            None => ResizeMode::default(),
            Some(r) => r.parse().map_err(|e: String| {
                settings.error("resize", format!("`{}`: {e}", key("resize")))
            })?,
        };
        if let Some(c) = keys.channels {
            if c != 1 && c != 3 {
                return Err(settings.out_of_range("channels", c, "1 (grey) or 3 (RGB)"));
            }
        }
        let test_fraction = match (layout, keys.test_fraction) {
            (Layout::TinyImagenet, Some(_)) => {
                return Err(settings.error(
                    "test_fraction",
                    format!(
                        "`{}`: Tiny ImageNet has its own test split (its `val/` folder)",
                        key("test_fraction")
                    ),
                ))
            }
            (_, Some(f)) if !(f > 0.0 && f < 1.0) => {
                return Err(settings.out_of_range("test_fraction", f, "strictly between 0 and 1"))
            }
            (_, f) => f.unwrap_or(0.2),
        };
        Ok(ImageSettings {
            options: ImageOptions {
                size,
                resize,
                channels: keys.channels,
                skip_unreadable: keys.skip_unreadable.unwrap_or(false),
            },
            test_fraction,
            cache: keys.cache.unwrap_or(true),
            cache_dir: keys.cache_dir,
        })
    }

    /// Where the cache goes for data in `dir`.
    fn cache_setting(&self, dir: &Path) -> CacheSetting {
        match (&self.cache, &self.cache_dir) {
            (false, _) => CacheSetting::Off,
            (true, Some(d)) => CacheSetting::In(dir.join(d)),
            (true, None) => CacheSetting::In(dir.join(DEFAULT_CACHE_DIR)),
        }
    }
}

/// `size = 32` or `size = [height, width]`.
fn read_size(s: &Section, key: &str) -> Result<(usize, usize), ConfigError> {
    let side = |v: &toml::Value| -> Option<usize> {
        v.as_integer()
            .filter(|&i| i >= 1 && i as usize <= MAX_IMAGE_SIDE)
            .map(|i| i as usize)
    };
    let bad = || {
        s.error(
            "",
            format!(
                "`{key}` = {} is not an image size (allowed: a side 1..={MAX_IMAGE_SIDE}, or [height, width])",
                s.value()
            ),
        )
    };
    match s.value() {
        v @ toml::Value::Integer(_) => side(v).map(|x| (x, x)).ok_or_else(bad),
        toml::Value::Array(a) if a.len() == 2 => match (side(&a[0]), side(&a[1])) {
            (Some(h), Some(w)) => Ok((h, w)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// Image files: `image-folder` or `tiny-imagenet`.
struct Images(Layout);

impl Images {
    fn scan(&self, dir: &Path) -> Result<ImageSource, String> {
        match self.0 {
            Layout::Folder => scan_image_folder(dir),
            Layout::TinyImagenet => scan_tiny_imagenet(dir),
        }
        .map_err(|e| e.to_string())
    }
}

impl DatasetFactory for Images {
    fn description(&self) -> String {
        match self.0 {
            Layout::Folder => {
                "a folder of PNG/JPEG images, one sub-folder per class (optionally under train/ and test/); resized to `size`, cached"
            }
            Layout::TinyImagenet => {
                "Tiny ImageNet, 64x64 colour, 200 classes (train/<wnid>/images, val/val_annotations.txt); cached"
            }
        }
        .into()
    }

    fn default_backbone(&self) -> Option<String> {
        Some("resnet20".into())
    }

    fn check(&self, settings: &Section) -> Result<(), ConfigError> {
        ImageSettings::read(settings, self.0).map(|_| ())
    }

    fn check_files(&self, dir: &Path, _settings: &Section) -> Result<(), String> {
        self.scan(dir).map(|_| ())
    }

    fn load(&self, dir: &Path, settings: &Section, seed: u64) -> Result<Splits, String> {
        let s = ImageSettings::read(settings, self.0).map_err(|e| e.to_string())?;
        let source = self.scan(dir)?;
        let loaded =
            load_images(&source, &s.options, &s.cache_setting(dir)).map_err(|e| e.to_string())?;
        into_splits(loaded, s.test_fraction, seed).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Source;

    fn section(text: &str) -> Section {
        let source = Source::new("e.toml", text);
        let doc = source.parse().unwrap();
        Section::new(&source, vec!["data".into()], doc.get("data").cloned()).without(&["dataset"])
    }

    #[test]
    fn image_settings_read_sizes_modes_and_refuse_bad_values() {
        let s = ImageSettings::read(
            &section("[data]\ndataset = \"image-folder\"\nsize = [24, 40]\nresize = \"pad\"\nchannels = 1\n"),
            Layout::Folder,
        )
        .unwrap();
        assert_eq!(s.options.size, Some((24, 40)));
        assert_eq!(s.options.resize, ResizeMode::Pad);
        assert_eq!(s.options.channels, Some(1));
        assert_eq!(s.test_fraction, 0.2);
        let s = ImageSettings::read(&section("[data]\nsize = 32\n"), Layout::Folder).unwrap();
        assert_eq!(s.options.size, Some((32, 32)));
        assert_eq!(
            s.cache_setting(Path::new("/d")),
            CacheSetting::In(PathBuf::from("/d/.dsnn-cache"))
        );
        for (text, needle) in [
            ("size = 0", "`data.size` = 0 is not an image size"),
            ("size = [32]", "is not an image size"),
            ("size = \"big\"", "is not an image size"),
            ("resize = \"zoom\"", "unknown resize mode `zoom`"),
            ("channels = 2", "`data.channels` = 2 is out of range"),
            (
                "test_fraction = 1.0",
                "`data.test_fraction` = 1 is out of range",
            ),
            ("colour = true", "unknown field `colour`"),
        ] {
            let e = ImageSettings::read(&section(&format!("[data]\n{text}\n")), Layout::Folder)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains("e.toml:2"), "{text}: {e}");
        }
        let e = ImageSettings::read(
            &section("[data]\ntest_fraction = 0.5\n"),
            Layout::TinyImagenet,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("its own test split"), "{e}");
    }

    #[test]
    fn cifar100_label_is_fine_or_coarse() {
        assert_eq!(
            Cifar100Settings::read(&section("[data]\n")).unwrap(),
            Cifar100Label::Fine
        );
        assert_eq!(
            Cifar100Settings::read(&section("[data]\nlabel = \"coarse\"\n")).unwrap(),
            Cifar100Label::Coarse
        );
        let e = Cifar100Settings::read(&section("[data]\nlabel = \"medium\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown label `medium`"), "{e}");
    }
}
