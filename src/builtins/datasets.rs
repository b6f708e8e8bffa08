//! The built-in data sets: MNIST, Fashion-MNIST (IDX), CIFAR-10 (binary
//! batches) and the UCI digits (CSV), read by dsnn-core's loaders; the
//! Fashion-MNIST subset and the digits are bundled in `data/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dsnn_core::data::{load_dataset, Augment, DatasetName, Splits};

use crate::registry::{DatasetFactory, Registry};
use crate::settings::Section;

/// Registers `mnist`, `fashion-mnist`, `cifar10` and `digits`.
pub fn register(r: &mut Registry) {
    for name in [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Digits,
    ] {
        r.register_dataset(&name.to_string(), Arc::new(Builtin(name)));
    }
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
