//! CIFAR-100 binary files: records of a coarse label byte (20
//! superclasses), a fine label byte (100 classes) and 3072 pixel bytes
//! (channel-major 32x32 RGB), in `train.bin` and `test.bin`.

use super::{check_labels, find_file, read_maybe_gzip, Dataset, Splits};
use crate::backbone::InputShape;
use crate::error::{CoreError, Result};
use std::path::{Path, PathBuf};

/// Which of a CIFAR-100 record's two labels is the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cifar100Label {
    /// The 100 fine classes.
    #[default]
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

impl Cifar100Label {
    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            Cifar100Label::Fine => 100,
            Cifar100Label::Coarse => 20,
        }
    }
}

impl std::str::FromStr for Cifar100Label {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fine" => Ok(Cifar100Label::Fine),
            "coarse" => Ok(Cifar100Label::Coarse),
            _ => Err(format!("unknown label `{s}` (allowed: fine, coarse)")),
        }
    }
}

const RECORD: usize = 2 + 3 * 32 * 32;

/// Reads CIFAR-100 binary files (gzip or raw) and concatenates them.
pub fn read_cifar100(files: &[PathBuf], label: Cifar100Label) -> Result<Dataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let b = read_maybe_gzip(path)?;
        if b.is_empty() || b.len() % RECORD != 0 {
            return Err(CoreError::data(
                path,
                format!(
                    "size {} is not a whole number of CIFAR-100 records ({RECORD} bytes each): truncated or not a CIFAR-100 file",
                    b.len()
                ),
            ));
        }
        let start = labels.len();
        for rec in b.chunks_exact(RECORD) {
            labels.push(match label {
                Cifar100Label::Coarse => rec[0],
                Cifar100Label::Fine => rec[1],
            });
            pixels.extend_from_slice(&rec[2..]);
        }
        check_labels(path, &labels[start..], label.classes())?;
    }
    Ok(Dataset {
        pixels,
        labels,
        shape: InputShape {
            channels: 3,
            height: 32,
            width: 32,
        },
        classes: label.classes(),
        pixel_max: 255.0,
    })
}

/// Loads CIFAR-100 from `dir` (`train.bin` and `test.bin`, or `.gz`).
pub fn load_cifar100(dir: &Path, label: Cifar100Label) -> Result<Splits> {
    if !dir.is_dir() {
        return Err(CoreError::data(
            dir,
            "is not a directory (the cifar100 data set was expected here)",
        ));
    }
    Ok(Splits {
        train: read_cifar100(&[find_file(dir, "train.bin")?], label)?,
        test: read_cifar100(&[find_file(dir, "test.bin")?], label)?,
    })
}
