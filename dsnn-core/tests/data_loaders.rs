//! Data loaders on the real files: the shared data sets (skipped with a
//! message when a clone lacks them; CI requires them) and the bundled subsets.

use dsnn_core::data::{
    load_dataset, read_cifar10_batches, read_digits_csv, read_idx_images, read_idx_labels, Augment,
    Batcher, DatasetName,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The shared real data directory when it holds `needs` (a path inside it),
/// or `None` with a message saying what is missing.
fn shared_data(needs: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("DSNN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if dir.join(needs).exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: shared data file {} not found (set DSNN_SHARED_DATA to the shared data directory)",
            dir.join(needs).display()
        );
        None
    }
}

fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
}

#[test]
fn mnist_labels_and_class_counts_are_the_known_ones() {
    let Some(dir) = shared_data("mnist") else {
        return;
    };
    let s = load_dataset(DatasetName::Mnist, &dir.join("mnist"), 0).unwrap();
    assert_eq!(s.train.len(), 60_000);
    assert_eq!(s.test.len(), 10_000);
    assert_eq!(&s.train.labels[..8], &[5, 0, 4, 1, 9, 2, 1, 3]);
    assert_eq!(&s.test.labels[..8], &[7, 2, 1, 0, 4, 1, 4, 9]);
    assert_eq!(
        s.train.class_counts(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!((s.train.shape.height, s.train.shape.width), (28, 28));
}

#[test]
fn fashion_mnist_labels_are_the_known_ones() {
    let Some(dir) = shared_data("fashion-mnist") else {
        return;
    };
    let s = load_dataset(DatasetName::FashionMnist, &dir.join("fashion-mnist"), 0).unwrap();
    assert_eq!(&s.train.labels[..8], &[9, 0, 0, 3, 0, 2, 7, 2]);
    assert_eq!(&s.test.labels[..8], &[9, 2, 1, 1, 6, 1, 4, 6]);
    assert_eq!(s.train.class_counts(), vec![6000; 10]);
}

#[test]
fn digits_class_counts_are_the_known_ones() {
    let Some(dir) = shared_data("digits/digits.csv.gz") else {
        return;
    };
    let d = read_digits_csv(&dir.join("digits/digits.csv.gz")).unwrap();
    assert_eq!(d.len(), 1797);
    assert_eq!(
        d.class_counts(),
        vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    );
    assert_eq!(d.pixels.iter().max(), Some(&16));
}

#[test]
fn cifar10_sample_has_the_known_labels() {
    let Some(dir) = shared_data("cifar10-sample/test_batch_first20.bin") else {
        return;
    };
    let d = read_cifar10_batches(&[dir.join("cifar10-sample/test_batch_first20.bin")]).unwrap();
    assert_eq!(
        d.labels,
        vec![3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    );
    assert_eq!(d.pixels.len(), 20 * 3072);
}

#[test]
fn bundled_subsets_load_and_digits_split_is_seeded() {
    let f = load_dataset(
        DatasetName::FashionMnist,
        &bundled("fashion-mnist-small"),
        0,
    )
    .unwrap();
    assert_eq!((f.train.len(), f.test.len()), (5000, 1000));
    assert_eq!(&f.train.labels[..8], &[9, 0, 0, 3, 0, 2, 7, 2]);
    let a = load_dataset(DatasetName::Digits, &bundled("digits"), 7).unwrap();
    let b = load_dataset(DatasetName::Digits, &bundled("digits"), 7).unwrap();
    let c = load_dataset(DatasetName::Digits, &bundled("digits"), 8).unwrap();
    assert_eq!(a.test.labels, b.test.labels);
    assert_ne!(a.test.pixels, c.test.pixels);
    assert_eq!(a.train.len() + a.test.len(), 1797);
    assert_eq!(a.test.len(), 359);
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dsnn-data-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn broken_files_give_errors_that_name_the_file() {
    let dir = scratch("broken");
    // Truncated: the header announces 10 images of 28x28, the file has 5 bytes.
    let trunc = dir.join("trunc-idx3-ubyte");
    let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28];
    bytes.extend_from_slice(&[1, 2, 3, 4, 5]);
    std::fs::write(&trunc, &bytes).unwrap();
    let e = read_idx_images(&trunc).unwrap_err().to_string();
    assert!(
        e.contains("trunc-idx3-ubyte") && e.contains("truncated"),
        "{e}"
    );
    // Wrong magic: a label file read as images.
    let labels = dir.join("labels-idx1-ubyte");
    std::fs::write(&labels, [0, 0, 8, 1, 0, 0, 0, 2, 1, 2]).unwrap();
    assert!(read_idx_labels(&labels).is_ok());
    let e = read_idx_images(&labels).unwrap_err().to_string();
    assert!(
        e.contains("labels-idx1-ubyte") && e.contains("magic"),
        "{e}"
    );
    // Corrupt gzip.
    let gz = dir.join("bad.gz");
    std::fs::File::create(&gz)
        .unwrap()
        .write_all(&[0x1f, 0x8b, 8, 0, 1, 2, 3])
        .unwrap();
    let e = read_idx_labels(&gz).unwrap_err().to_string();
    assert!(e.contains("bad.gz") && e.contains("gzip"), "{e}");
    // Missing directory and missing file.
    let e = load_dataset(DatasetName::Mnist, &dir.join("nowhere"), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nowhere"), "{e}");
    let e = load_dataset(DatasetName::Mnist, &dir, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("not found"),
        "{e}"
    );
    // A CIFAR file that is not a whole number of records.
    let cifar = dir.join("data.bin");
    std::fs::write(&cifar, vec![0u8; 3000]).unwrap();
    let e = read_cifar10_batches(&[cifar]).unwrap_err().to_string();
    assert!(e.contains("data.bin") && e.contains("CIFAR-10"), "{e}");
    // A digits line with a wrong field count.
    let csv = dir.join("digits.csv");
    std::fs::write(&csv, "1,2,3\n").unwrap();
    let e = read_digits_csv(&csv).unwrap_err().to_string();
    assert!(e.contains("digits.csv") && e.contains("line 1"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batches_are_normalised_and_augmentation_is_seeded() {
    use rand::SeedableRng;
    let f = load_dataset(
        DatasetName::FashionMnist,
        &bundled("fashion-mnist-small"),
        0,
    )
    .unwrap();
    let batcher = Batcher {
        normalization: f.train.channel_stats(),
        augment: Augment::default(),
    };
    let idx: Vec<usize> = (0..1000).collect();
    let (x, y) = batcher
        .batch(&f.train, &idx, None, &candle_core::Device::Cpu)
        .unwrap();
    assert_eq!(x.dims(), &[1000, 1, 28, 28]);
    assert_eq!(y.dims(), &[1000]);
    let v: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let mean = v.iter().map(|&a| f64::from(a)).sum::<f64>() / v.len() as f64;
    let var = v
        .iter()
        .map(|&a| (f64::from(a) - mean).powi(2))
        .sum::<f64>()
        / v.len() as f64;
    assert!(
        mean.abs() < 0.05 && (var.sqrt() - 1.0).abs() < 0.05,
        "mean {mean}, std {}",
        var.sqrt()
    );
    let aug = Batcher {
        augment: Augment::cifar(),
        ..batcher
    };
    let first = |seed| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        aug.batch(
            &f.train,
            &idx[..8],
            Some(&mut rng),
            &candle_core::Device::Cpu,
        )
        .unwrap()
        .0
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
    };
    assert_eq!(first(1), first(1));
    assert_ne!(first(1), first(2));
    assert_ne!(first(1), v[..8 * 784].to_vec());
}

#[test]
fn cifar10_directory_layout_loads_batches_and_test_set() {
    let Some(dir) = shared_data("cifar10-sample/test_batch_first20.bin") else {
        return;
    };
    let sample = std::fs::read(dir.join("cifar10-sample/test_batch_first20.bin")).unwrap();
    let cifar = scratch("cifar-dir");
    // The real layout: five training batches and a test batch.
    for i in 1..=5 {
        std::fs::write(
            cifar.join(format!("data_batch_{i}.bin")),
            &sample[..(4 * i) * 3073],
        )
        .unwrap();
    }
    std::fs::write(cifar.join("test_batch.bin"), &sample).unwrap();
    let s = load_dataset(DatasetName::Cifar10, &cifar, 0).unwrap();
    assert_eq!(s.train.len(), 4 + 8 + 12 + 16 + 20);
    assert_eq!(s.test.len(), 20);
    assert_eq!(&s.train.labels[..4], &[3, 8, 8, 0]);
    assert_eq!((s.train.shape.channels, s.train.shape.height), (3, 32));
    std::fs::remove_file(cifar.join("data_batch_3.bin")).unwrap();
    let e = load_dataset(DatasetName::Cifar10, &cifar, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("data_batch_3.bin") && e.contains("not found"),
        "{e}"
    );
    std::fs::remove_dir_all(&cifar).unwrap();
}
