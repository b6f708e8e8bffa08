//! Fuzzing the image-data readers with property tests: byte edits and cuts
//! of a valid image cache, arbitrary bytes as a cache, CIFAR-100 files and
//! PNG/JPEG images must give a clean error (or, for a cache, a rebuild),
//! never a panic, and an edited cache is never used as it stands.
//!
//! `DSNN_FUZZ_CASES` sets the cases per property (default 256).

use dsnn_core::data::cifar100::{read_cifar100, Cifar100Label};
use dsnn_core::data::image_cache::{read_cache, write_cache, CacheRead, CachedImages};
use dsnn_core::data::images::{decode_images, ImageOptions, LabelledFile};
use dsnn_core::data::Dataset;
use dsnn_core::InputShape;
use proptest::prelude::*;
use proptest::test_runner::Config;
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

/// A fresh file path for one case (its directory removed when dropped).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dsnn-fuzz-img-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn valid_cache() -> Vec<u8> {
    let s = Scratch::new();
    let d = Dataset {
        pixels: (0..3 * 3 * 4 * 4).map(|i| (i * 7) as u8).collect(),
        labels: vec![0, 1, 1],
        shape: InputShape {
            channels: 3,
            height: 4,
            width: 4,
        },
        classes: 2,
        pixel_max: 255.0,
    };
    let c = CachedImages {
        classes: vec!["a".into(), "b".into()],
        parts: vec![("train".into(), d.clone()), ("test".into(), d.head(1))],
        skipped: vec![],
    };
    let path = s.0.join("c.bin");
    write_cache(&path, "the key", &c).unwrap();
    std::fs::read(path).unwrap()
}

fn png_bytes() -> Vec<u8> {
    let img = image::RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

proptest! {
    #![proptest_config(config())]

    /// Any edit of a valid cache is caught (corrupt or stale) or leaves
    /// it exactly valid; a cut is always caught.
    #[test]
    fn an_edited_cache_is_never_used(edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4), cut in any::<prop::sample::Index>()) {
        let good = valid_cache();
        let s = Scratch::new();
        let path = s.0.join("c.bin");
        let mut bad = good.clone();
        for (at, x) in &edits {
            let i = at.index(bad.len());
            bad[i] ^= x;
        }
        std::fs::write(&path, &bad).unwrap();
        let (c, status) = read_cache(&path, "the key");
        if bad != good {
            prop_assert!(c.is_none() && status != CacheRead::Hit, "{status:?}");
        }
        let n = cut.index(good.len());
        std::fs::write(&path, &good[..n]).unwrap();
        prop_assert!(read_cache(&path, "the key").0.is_none());
    }

    /// Arbitrary bytes are never a cache.
    #[test]
    fn arbitrary_bytes_are_no_cache(bytes in prop::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
        let s = Scratch::new();
        let path = s.0.join("c.bin");
        let mut b = if magic { b"DSNNIMGC\x01\0\0\0".to_vec() } else { Vec::new() };
        b.extend(bytes);
        std::fs::write(&path, &b).unwrap();
        let (c, status) = read_cache(&path, "");
        prop_assert!(c.is_none() && matches!(status, CacheRead::Corrupt(_) | CacheRead::Stale), "{status:?}");
    }

    /// Arbitrary CIFAR-100 files load consistently or give an error.
    #[test]
    fn cifar100_files_load_or_fail_cleanly(records in 0usize..3, tail in 0usize..3, labels in prop::collection::vec((any::<u8>(), any::<u8>()), 3), coarse in any::<bool>()) {
        let s = Scratch::new();
        let path = s.0.join("train.bin");
        let mut b = Vec::new();
        for &(c, f) in labels.iter().take(records) {
            b.push(c);
            b.push(f);
            b.extend(std::iter::repeat_n(9u8, 3072));
        }
        b.extend(std::iter::repeat_n(1u8, tail));
        std::fs::write(&path, &b).unwrap();
        let label = if coarse { Cifar100Label::Coarse } else { Cifar100Label::Fine };
        match read_cifar100(std::slice::from_ref(&path), label) {
            Ok(d) => {
                prop_assert_eq!(d.pixels.len(), d.len() * 3072);
                prop_assert!(d.labels.iter().all(|&l| (l as usize) < label.classes()));
                prop_assert!(records > 0 && tail == 0);
            }
            Err(e) => prop_assert!(e.to_string().contains("train.bin"), "{e}"),
        }
    }

    /// An edited PNG decodes or is an error naming the file (skipped and
    /// reported with `skip_unreadable`).
    #[test]
    fn edited_images_decode_or_fail_naming_the_file(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6), skip in any::<bool>()) {
        let s = Scratch::new();
        let mut b = png_bytes();
        for (at, x) in &edits {
            let i = at.index(b.len());
            b[i] = *x;
        }
        let path = s.0.join("x.png");
        std::fs::write(&path, &b).unwrap();
        let files = [LabelledFile { path: path.clone(), label: 0 }];
        let opts = ImageOptions { size: Some((3, 3)), skip_unreadable: skip, ..Default::default() };
        match decode_images(&files, 1, &opts) {
            Ok(d) => {
                let n = d.dataset.len();
                prop_assert_eq!(n + d.skipped.len(), 1);
                prop_assert_eq!(d.dataset.pixels.len(), n * d.dataset.shape.channels * 9);
            }
            Err(e) => prop_assert!(!skip && e.to_string().contains("x.png"), "{e}"),
        }
    }
}
