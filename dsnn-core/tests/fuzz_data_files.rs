//! Fuzzing the data-set decoders (IDX, CIFAR-10 binary batches, the digits
//! CSV, gzip around any of them) with property tests: headers of edge-case
//! sizes, byte-mutated valid files (plain and gzip, the gzip stream itself
//! mutated too) and arbitrary bytes must load or give a clean error, never
//! panic or allocate what a header announces without the bytes behind it.
//! A data set that loads is then used (statistics, splits, selections).
//!
//! `DSNN_FUZZ_CASES` sets the cases per property (default 256, a few
//! seconds); see docs/reliability.md for the long run.

use dsnn_core::data::{load_dataset, DatasetName, Splits};
use flate2::{write::GzEncoder, Compression};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

fn config() -> Config {
    let cases = std::env::var("DSNN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A fresh directory for one case (removed when dropped).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dsnn-fuzz-data-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.0.join(name), bytes).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Uses the splits as training would, so that a file that loads but holds
/// something the rest of dsnn cannot take would show here.
fn exercise(splits: &Splits, seed: u64) {
    for d in [&splits.train, &splits.test] {
        let s = d.shape;
        assert_eq!(d.pixels.len(), d.len() * s.channels * s.height * s.width);
        assert!(d.labels.iter().all(|&l| usize::from(l) < d.classes));
        let _ = d.class_counts();
        if !d.is_empty() {
            let _ = d.channel_stats();
        }
        let (a, b) = d.split(0.5, seed);
        assert_eq!(a.len() + b.len(), d.len());
        let _ = d.head(3);
        let picks: Vec<usize> = (0..d.len()).rev().step_by(2).collect();
        assert_eq!(d.select(&picks).len(), picks.len());
    }
}

/// Byte edits: flips, deletions, insertions, and 32-bit big-endian
/// overwrites with edge-case sizes (where IDX headers hold theirs).
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Word(usize, u32),
    Truncate(usize),
}

fn size_word() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..40,
        prop::sample::select(vec![
            u32::MAX,
            u32::MAX - 1,
            1 << 31,
            1 << 30,
            1 << 16,
            65_535,
            0x0803,
            0x0801,
            3073,
        ]),
        any::<u32>(),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(at, x)| Edit::Flip(at, x)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(at, n)| Edit::Delete(at, n)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        3 => (0usize..4, size_word()).prop_map(|(k, w)| Edit::Word(4 * k, w)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ];
    prop::collection::vec(edit, 1..4)
}

fn apply(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for e in edits {
        let at = |i: usize, len: usize| i % (len + 1);
        match e {
            Edit::Flip(i, x) if !b.is_empty() => {
                let i = i % b.len();
                b[i] ^= x;
            }
            Edit::Flip(..) => {}
            Edit::Delete(i, n) => {
                let i = at(*i, b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Edit::Insert(i, s) => {
                let i = at(*i, b.len());
                b.splice(i..i, s.iter().copied());
            }
            Edit::Word(i, w) if i + 4 <= b.len() => {
                b[*i..i + 4].copy_from_slice(&w.to_be_bytes());
            }
            Edit::Word(..) => {}
            Edit::Truncate(n) => {
                let n = at(*n, b.len());
                b.truncate(n);
            }
        }
    }
    b
}

/// How a file is stored: plain, gzip, or gzip with the compressed stream
/// itself edited (a corrupt or truncated download).
#[derive(Debug, Clone)]
enum Wrap {
    Plain,
    Gzip,
    CorruptGzip(Vec<Edit>),
}

fn wrap() -> impl Strategy<Value = Wrap> {
    prop_oneof![
        3 => Just(Wrap::Plain),
        1 => Just(Wrap::Gzip),
        2 => edits().prop_map(Wrap::CorruptGzip),
    ]
}

/// Writes `name` (with `.gz` when wrapped).
fn store(dir: &Scratch, name: &str, bytes: &[u8], how: &Wrap) {
    match how {
        Wrap::Plain => dir.write(name, bytes),
        Wrap::Gzip => dir.write(&format!("{name}.gz"), &gzip(bytes)),
        Wrap::CorruptGzip(e) => dir.write(&format!("{name}.gz"), &apply(&gzip(bytes), e)),
    }
}

fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for v in [n, rows, cols] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    b
}

fn idx_labels(n: u32, labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(labels);
    b
}

const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// A valid MNIST layout: 6 training and 3 test images of 4x3.
fn valid_idx() -> [Vec<u8>; 4] {
    let pixels: Vec<u8> = (0..72).map(|i| (i * 37 % 256) as u8).collect();
    [
        idx_images(6, 4, 3, &pixels),
        idx_labels(6, &[0, 1, 2, 9, 4, 5]),
        idx_images(3, 4, 3, &pixels[..36]),
        idx_labels(3, &[7, 8, 9]),
    ]
}

const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;
const CIFAR_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

fn cifar_batch(records: usize, seed: u8) -> Vec<u8> {
    (0..records * CIFAR_RECORD)
        .map(|i| {
            if i % CIFAR_RECORD == 0 {
                (i / CIFAR_RECORD) as u8 % 10
            } else {
                (i as u8).wrapping_mul(seed)
            }
        })
        .collect()
}

fn digits_csv() -> String {
    (0..5)
        .map(|r| {
            let mut v: Vec<String> = (0..64).map(|i| ((i * 7 + r) % 17).to_string()).collect();
            v.push((r % 10).to_string());
            v.join(",") + "\n"
        })
        .collect()
}

/// Text edits of the digits CSV: out-of-range numbers, separators, and
/// spellings a float parser accepts.
fn csv_edits() -> impl Strategy<Value = Vec<(usize, &'static str, usize)>> {
    let snippets = vec![
        ",",
        "\n",
        "\r\n",
        " ",
        "-1",
        "17",
        "10",
        "16",
        "9",
        "1e3",
        "nan",
        "NaN",
        "inf",
        "-0",
        "0.5",
        "1e-400",
        "99999999999999999999",
        "\u{fffd}",
        "+3",
        "",
    ];
    prop::collection::vec(
        (any::<usize>(), prop::sample::select(snippets), 0usize..4),
        1..5,
    )
}

proptest! {
    #![proptest_config(config())]

    /// IDX headers of edge-case sizes over a few bytes of pixels.
    #[test]
    fn idx_headers_of_any_size_load_or_fail_cleanly(
        counts in prop::collection::vec(size_word(), 3),
        pixels in prop::collection::vec(any::<u8>(), 0..200),
        label_count in size_word(),
        labels in prop::collection::vec(0u8..12, 0..40),
        seed in any::<u64>(),
    ) {
        let dir = Scratch::new();
        let images = idx_images(counts[0], counts[1], counts[2], &pixels);
        let labels = idx_labels(label_count, &labels);
        dir.write("train-images-idx3-ubyte", &images);
        dir.write("train-labels-idx1-ubyte", &labels);
        dir.write("t10k-images-idx3-ubyte", &images);
        dir.write("t10k-labels-idx1-ubyte", &labels);
        if let Ok(splits) = load_dataset(DatasetName::Mnist, &dir.0, seed) {
            exercise(&splits, seed);
        }
    }

    /// One file of a valid MNIST layout edited, stored plain or as gzip.
    #[test]
    fn mutated_idx_files_load_or_fail_cleanly(
        which in 0usize..4,
        edits in edits(),
        how in wrap(),
        seed in any::<u64>(),
    ) {
        let dir = Scratch::new();
        for (i, (name, bytes)) in IDX_FILES.iter().zip(valid_idx()).enumerate() {
            if i == which {
                store(&dir, name, &apply(&bytes, &edits), &how);
            } else {
                dir.write(name, &bytes);
            }
        }
        if let Ok(splits) = load_dataset(DatasetName::FashionMnist, &dir.0, seed) {
            exercise(&splits, seed);
        }
    }

    /// One CIFAR-10 batch edited (records cut, labels out of range).
    #[test]
    fn mutated_cifar_batches_load_or_fail_cleanly(
        which in 0usize..6,
        edits in edits(),
        how in wrap(),
        seed in any::<u64>(),
    ) {
        let dir = Scratch::new();
        for (i, name) in CIFAR_FILES.iter().enumerate() {
            let batch = cifar_batch(1 + i % 2, i as u8 + 3);
            if i == which {
                store(&dir, name, &apply(&batch, &edits), &how);
            } else {
                dir.write(name, &batch);
            }
        }
        if let Ok(splits) = load_dataset(DatasetName::Cifar10, &dir.0, seed) {
            exercise(&splits, seed);
        }
    }

    /// The digits CSV with text edits, then byte edits, plain or gzip.
    #[test]
    fn mutated_digits_csv_loads_or_fails_cleanly(
        text_edits in csv_edits(),
        byte_edits in prop::option::of(edits()),
        how in wrap(),
        seed in any::<u64>(),
    ) {
        let mut text = digits_csv().into_bytes();
        for (at, s, cut) in &text_edits {
            let i = at % (text.len() + 1);
            let end = (i + cut).min(text.len());
            text.splice(i..end, s.bytes());
        }
        let bytes = match &byte_edits {
            Some(e) => apply(&text, e),
            None => text,
        };
        let dir = Scratch::new();
        store(&dir, "digits.csv", &bytes, &how);
        if let Ok(splits) = load_dataset(DatasetName::Digits, &dir.0, seed) {
            exercise(&splits, seed);
        }
    }

    /// Arbitrary bytes (sometimes behind a gzip magic) as every file kind.
    #[test]
    fn arbitrary_bytes_load_or_fail_cleanly(
        mut bytes in prop::collection::vec(any::<u8>(), 0..400),
        gz_magic in any::<bool>(),
        seed in any::<u64>(),
    ) {
        if gz_magic {
            bytes.splice(0..0, [0x1f, 0x8b]);
        }
        let dir = Scratch::new();
        for name in IDX_FILES.iter().chain(&CIFAR_FILES).chain(&["digits.csv"]) {
            dir.write(name, &bytes);
        }
        for name in [DatasetName::Mnist, DatasetName::Cifar10, DatasetName::Digits] {
            if let Ok(splits) = load_dataset(name, &dir.0, seed) {
                exercise(&splits, seed);
            }
        }
    }
}
