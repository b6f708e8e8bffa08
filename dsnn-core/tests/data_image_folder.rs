//! Image folders, Tiny ImageNet and CIFAR-100 on files the tests make:
//! PNG and JPEG images written with the `image` crate, synthetic binary
//! records. Nothing is downloaded.

use dsnn_core::data::cifar100::{load_cifar100, Cifar100Label};
use dsnn_core::data::image_folder::{
    cache_file, into_splits, load_images, scan_image_folder, scan_tiny_imagenet, stratified_split,
    CacheOutcome, CacheSetting,
};
use dsnn_core::data::images::{fit, ImageOptions, ResizeMode};
use image::{DynamicImage, GrayImage, Rgb, RgbImage};
use std::path::{Path, PathBuf};

/// A fresh temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("dsnn-imgf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `w x h` image of one colour with a brighter square whose place
/// depends on `seed` (so images differ).
fn colour_image(w: u32, h: u32, colour: [u8; 3], seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let inside = (x + seed) % w < w / 3 && (y + seed) % h < h / 3;
        if inside {
            Rgb([255, 255, 255])
        } else {
            Rgb(colour)
        }
    })
}

/// Writes `n` images per class: class `cat` red PNGs, `dog` green JPEGs,
/// `owl` grey PNGs.
fn make_folder(root: &Path, n: u32, w: u32, h: u32) {
    for (class, i) in [("cat", 0), ("dog", 1), ("owl", 2)] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for k in 0..n {
            match i {
                0 => colour_image(w, h, [200, 20, 20], k)
                    .save(dir.join(format!("{k}.png")))
                    .unwrap(),
                1 => colour_image(w, h, [20, 200, 20], k)
                    .save(dir.join(format!("{k}.JPG")))
                    .unwrap(),
                _ => GrayImage::from_fn(w, h, |x, _| image::Luma([(x * 255 / w) as u8]))
                    .save(dir.join(format!("{k}.png")))
                    .unwrap(),
            }
        }
    }
}

fn opts(size: Option<(usize, usize)>) -> ImageOptions {
    ImageOptions {
        size,
        ..Default::default()
    }
}

#[test]
fn a_folder_of_pngs_and_jpegs_loads_resized_with_sorted_classes() {
    let t = TempDir::new("basic");
    make_folder(&t.0, 5, 20, 12);
    std::fs::write(t.0.join("cat").join("notes.txt"), "not an image").unwrap();
    let source = scan_image_folder(&t.0).unwrap();
    assert_eq!(source.classes, vec!["cat", "dog", "owl"]);
    assert_eq!(source.parts.len(), 1);
    assert_eq!(source.parts[0].1.len(), 15, "the .txt file is no image");
    let loaded = load_images(&source, &opts(Some((8, 10))), &CacheSetting::Off).unwrap();
    assert_eq!(loaded.cache, CacheOutcome::Off);
    let all = &loaded.parts[0].1;
    assert_eq!(all.len(), 15);
    assert_eq!(
        (all.shape.channels, all.shape.height, all.shape.width),
        (3, 8, 10),
        "colour images make 3 channels"
    );
    assert_eq!(all.class_counts(), vec![5, 5, 5]);
    // Red images are red in channel 0, the JPEG greens in channel 1 (lossy:
    // a tolerance), the grey ones equal in all three channels.
    let hw = 80;
    let img = |i: usize| &all.pixels[i * 3 * hw..(i + 1) * 3 * hw];
    let mean = |s: &[u8]| s.iter().map(|&p| f64::from(p)).sum::<f64>() / s.len() as f64;
    let cat = img(0);
    assert!(mean(&cat[..hw]) > 150.0 && mean(&cat[hw..2 * hw]) < 120.0);
    let dog = img(5);
    assert!(mean(&dog[hw..2 * hw]) > 150.0 && mean(&dog[..hw]) < 120.0);
    let owl = img(10);
    assert_eq!(&owl[..hw], &owl[hw..2 * hw]);
    // The seeded stratified split keeps every class in both splits.
    let splits = into_splits(loaded.clone(), 0.4, 7).unwrap();
    assert_eq!(splits.test.class_counts(), vec![2, 2, 2]);
    assert_eq!(splits.train.class_counts(), vec![3, 3, 3]);
    let again = into_splits(loaded.clone(), 0.4, 7).unwrap();
    assert_eq!(again.test.pixels, splits.test.pixels);
    let other = into_splits(loaded, 0.4, 8).unwrap();
    assert_ne!(
        other.test.pixels, splits.test.pixels,
        "another seed, another split"
    );
}

#[test]
fn grey_only_folders_have_one_channel_unless_three_are_asked_for() {
    let t = TempDir::new("grey");
    for class in ["a", "b"] {
        std::fs::create_dir_all(t.0.join(class)).unwrap();
        for k in 0..2u8 {
            GrayImage::from_pixel(6, 6, image::Luma([40 * k + 10]))
                .save(t.0.join(class).join(format!("{k}.png")))
                .unwrap();
        }
    }
    let source = scan_image_folder(&t.0).unwrap();
    let grey = load_images(&source, &opts(None), &CacheSetting::Off).unwrap();
    let d = &grey.parts[0].1;
    assert_eq!((d.shape.channels, d.shape.height, d.shape.width), (1, 6, 6));
    assert_eq!(d.pixels[0], 10);
    let rgb = ImageOptions {
        channels: Some(3),
        ..opts(None)
    };
    let d = &load_images(&source, &rgb, &CacheSetting::Off)
        .unwrap()
        .parts[0]
        .1;
    assert_eq!(d.shape.channels, 3);
    assert!(
        d.pixels[..108].iter().all(|&p| p == 10),
        "grey to RGB copies the grey"
    );
}

#[test]
fn crop_pad_and_stretch_fit_a_wide_image() {
    // 40x10: left half black, right half white, a red stripe at the far left.
    let img = RgbImage::from_fn(40, 10, |x, _| {
        if x < 2 {
            Rgb([255, 0, 0])
        } else if x < 20 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    });
    let img = DynamicImage::ImageRgb8(img);
    let crop = fit(&img, 10, 10, ResizeMode::Crop).to_rgb8();
    assert_eq!(crop.dimensions(), (10, 10));
    // The centre crop keeps x in 15..25: no red stripe, black then white.
    assert!(
        crop.pixels().all(|p| p[0] == p[1]),
        "the red edge is cut off"
    );
    assert_eq!(crop.get_pixel(0, 5), &Rgb([0, 0, 0]));
    assert_eq!(crop.get_pixel(9, 5), &Rgb([255, 255, 255]));
    let pad = fit(&img, 10, 10, ResizeMode::Pad).to_rgb8();
    assert_eq!(pad.dimensions(), (10, 10));
    // Scaled to 10x3 (rounded from 2.5) and centred: black rows above and below.
    assert_eq!(pad.get_pixel(9, 0), &Rgb([0, 0, 0]));
    assert_eq!(pad.get_pixel(9, 9), &Rgb([0, 0, 0]));
    assert!(
        pad.get_pixel(9, 5)[1] > 200,
        "the image itself is in the middle rows"
    );
    assert!(
        pad.get_pixel(0, 5)[0] > pad.get_pixel(0, 5)[1],
        "the red edge is kept"
    );
    let stretch = fit(&img, 10, 10, ResizeMode::Stretch).to_rgb8();
    assert_eq!(stretch.dimensions(), (10, 10));
    assert!(
        stretch.get_pixel(9, 0)[1] > 200,
        "no padding when stretched"
    );
}

#[test]
fn bad_folders_are_errors_naming_the_folder_or_file() {
    let t = TempDir::new("bad");
    // One class.
    make_folder(&t.0, 2, 8, 8);
    std::fs::remove_dir_all(t.0.join("dog")).unwrap();
    std::fs::remove_dir_all(t.0.join("owl")).unwrap();
    let e = scan_image_folder(&t.0).unwrap_err().to_string();
    assert!(e.contains("holds one class folder (`cat`)"), "{e}");
    // An empty class folder.
    std::fs::create_dir_all(t.0.join("dog")).unwrap();
    std::fs::write(t.0.join("dog").join("readme.md"), "x").unwrap();
    let e = scan_image_folder(&t.0).unwrap_err().to_string();
    assert!(
        e.contains(&t.0.join("dog").display().to_string())
            && e.contains("holds no PNG or JPEG files"),
        "{e}"
    );
    // Images but no class folders.
    let flat = TempDir::new("flat");
    colour_image(4, 4, [1, 2, 3], 0)
        .save(flat.0.join("a.png"))
        .unwrap();
    let e = scan_image_folder(&flat.0).unwrap_err().to_string();
    assert!(e.contains("holds 1 images but no class folders"), "{e}");
    // Mixed sizes without `size`, then with it.
    colour_image(9, 8, [1, 2, 3], 0)
        .save(t.0.join("dog").join("big.png"))
        .unwrap();
    let source = scan_image_folder(&t.0).unwrap();
    let e = load_images(&source, &opts(None), &CacheSetting::Off)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("big.png") && e.contains("is 9x8") && e.contains("mixed sizes need `size`"),
        "{e}"
    );
    assert!(load_images(&source, &opts(Some((8, 8))), &CacheSetting::Off).is_ok());
    // An unreadable image: an error naming it, or skipped when asked.
    std::fs::write(
        t.0.join("dog").join("broken.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    let source = scan_image_folder(&t.0).unwrap();
    let e = load_images(&source, &opts(Some((8, 8))), &CacheSetting::Off)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("broken.png") && e.contains("not a readable PNG or JPEG"),
        "{e}"
    );
    let skip = ImageOptions {
        skip_unreadable: true,
        ..opts(Some((8, 8)))
    };
    let loaded = load_images(&source, &skip, &CacheSetting::Off).unwrap();
    assert_eq!(loaded.skipped.len(), 1);
    assert!(loaded.skipped[0].path.ends_with("dog/broken.png"));
    assert_eq!(loaded.parts[0].1.class_counts(), vec![2, 1]);
    // `train/` without `test/`.
    let half = TempDir::new("half");
    make_folder(&half.0.join("train"), 1, 4, 4);
    let e = scan_image_folder(&half.0).unwrap_err().to_string();
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn train_and_test_folders_are_the_splits() {
    let t = TempDir::new("split");
    make_folder(&t.0.join("train"), 3, 8, 8);
    make_folder(&t.0.join("test"), 1, 8, 8);
    std::fs::remove_dir_all(t.0.join("test").join("owl")).unwrap();
    let source = scan_image_folder(&t.0).unwrap();
    assert_eq!(source.classes, vec!["cat", "dog", "owl"]);
    let loaded = load_images(&source, &opts(None), &CacheSetting::Off).unwrap();
    let s = into_splits(loaded, 0.5, 0).unwrap();
    assert_eq!(s.train.class_counts(), vec![3, 3, 3]);
    assert_eq!(s.test.class_counts(), vec![1, 1, 0]);
    assert_eq!(s.test.classes, 3);
    // A test class the training split lacks.
    std::fs::create_dir_all(t.0.join("test").join("yak")).unwrap();
    colour_image(8, 8, [9, 9, 9], 0)
        .save(t.0.join("test").join("yak").join("0.png"))
        .unwrap();
    let e = scan_image_folder(&t.0).unwrap_err().to_string();
    assert!(e.contains("class `yak` of the test split"), "{e}");
}

#[test]
fn the_cache_is_used_then_rebuilt_when_stale_or_corrupt() {
    let t = TempDir::new("cache");
    make_folder(&t.0, 3, 10, 10);
    let cache_dir = t.0.join(".dsnn-cache");
    let setting = CacheSetting::In(cache_dir.clone());
    let o = opts(Some((6, 6)));
    let source = scan_image_folder(&t.0).unwrap();
    let first = load_images(&source, &o, &setting).unwrap();
    let path = cache_file(&cache_dir, &source, &o);
    assert_eq!(
        first.cache,
        CacheOutcome::Written {
            path: path.clone(),
            rebuilt: None
        }
    );
    assert!(path.is_file());
    // The cache folder is hidden: it is no class.
    let source = scan_image_folder(&t.0).unwrap();
    assert_eq!(source.classes.len(), 3);
    let second = load_images(&source, &o, &setting).unwrap();
    assert_eq!(second.cache, CacheOutcome::Hit(path.clone()));
    assert_eq!(second.parts[0].1.pixels, first.parts[0].1.pixels);
    assert_eq!(second.parts[0].1.labels, first.parts[0].1.labels);
    // The same folder by another path, the same cache file.
    let detour = scan_image_folder(&t.0.join("cat").join("..")).unwrap();
    assert_eq!(cache_file(&cache_dir, &detour, &o), path);
    assert_eq!(
        load_images(&detour, &o, &setting).unwrap().cache,
        CacheOutcome::Hit(path.clone())
    );
    // Other settings, another cache file.
    let pad = ImageOptions {
        resize: ResizeMode::Pad,
        ..o.clone()
    };
    assert_ne!(cache_file(&cache_dir, &source, &pad), path);
    // A changed image makes the cache stale: rebuilt, with the new pixels.
    std::thread::sleep(std::time::Duration::from_millis(20));
    colour_image(10, 10, [0, 0, 250], 0)
        .save(t.0.join("cat").join("0.png"))
        .unwrap();
    let source = scan_image_folder(&t.0).unwrap();
    let third = load_images(&source, &o, &setting).unwrap();
    assert!(
        matches!(&third.cache, CacheOutcome::Written { rebuilt: Some(why), .. } if why.contains("other files")),
        "{:?}",
        third.cache
    );
    assert_ne!(third.parts[0].1.pixels, first.parts[0].1.pixels);
    // A corrupted cache file is detected and rebuilt, never used.
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 7] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let fourth = load_images(&source, &o, &setting).unwrap();
    assert!(
        matches!(&fourth.cache, CacheOutcome::Written { rebuilt: Some(why), .. } if why.contains("checksum")),
        "{:?}",
        fourth.cache
    );
    assert_eq!(fourth.parts[0].1.pixels, third.parts[0].1.pixels);
    // A truncated one too.
    std::fs::write(&path, &bytes[..n / 2]).unwrap();
    let fifth = load_images(&source, &o, &setting).unwrap();
    assert!(
        matches!(&fifth.cache, CacheOutcome::Written { rebuilt: Some(why), .. } if why.contains("corrupt")),
        "{:?}",
        fifth.cache
    );
    assert_eq!(
        load_images(&source, &o, &setting).unwrap().cache,
        CacheOutcome::Hit(path)
    );
    // A cache folder that cannot be written is a warning, not an error.
    let blocker = t.0.join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let unwritable = load_images(&source, &o, &CacheSetting::In(blocker.join("sub"))).unwrap();
    assert!(matches!(unwritable.cache, CacheOutcome::Unwritable { .. }));
    assert_eq!(unwritable.parts[0].1.pixels, third.parts[0].1.pixels);
}

#[test]
fn stratified_split_holds_out_each_class() {
    let t = TempDir::new("strat");
    make_folder(&t.0, 10, 4, 4);
    let source = scan_image_folder(&t.0).unwrap();
    let all = load_images(&source, &opts(None), &CacheSetting::Off)
        .unwrap()
        .parts
        .remove(0)
        .1;
    let (rest, held) = stratified_split(&all, 0.3, 1);
    assert_eq!(held.class_counts(), vec![3, 3, 3]);
    assert_eq!(rest.class_counts(), vec![7, 7, 7]);
}

/// Tiny ImageNet's layout: wnids.txt, train/<wnid>/images, val/images with
/// val_annotations.txt.
fn make_tiny_imagenet(root: &Path, wnids: &[&str], per_class: u32) {
    std::fs::write(root.join("wnids.txt"), wnids.join("\n") + "\n").unwrap();
    let val = root.join("val").join("images");
    std::fs::create_dir_all(&val).unwrap();
    let mut ann = String::new();
    for (i, wnid) in wnids.iter().enumerate() {
        let dir = root.join("train").join(wnid).join("images");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            root.join("train")
                .join(wnid)
                .join(format!("{wnid}_boxes.txt")),
            "",
        )
        .unwrap();
        let colour = [(60 * i) as u8, 100, 200 - (60 * i) as u8];
        for k in 0..per_class {
            colour_image(16, 16, colour, k)
                .save(dir.join(format!("{wnid}_{k}.JPEG")))
                .unwrap();
        }
        let name = format!("val_{i}.JPEG");
        colour_image(16, 16, colour, 1)
            .save(val.join(&name))
            .unwrap();
        ann.push_str(&format!("{name}\t{wnid}\t0\t0\t15\t15\n"));
    }
    std::fs::write(root.join("val").join("val_annotations.txt"), ann).unwrap();
    std::fs::create_dir_all(root.join("test").join("images")).unwrap();
}

#[test]
fn tiny_imagenet_layout_loads_train_and_val() {
    let t = TempDir::new("tiny");
    make_tiny_imagenet(&t.0, &["n02", "n01", "n03"], 4);
    let source = scan_tiny_imagenet(&t.0).unwrap();
    assert_eq!(source.classes, vec!["n01", "n02", "n03"], "sorted wnids");
    let loaded = load_images(&source, &opts(None), &CacheSetting::Off).unwrap();
    let s = into_splits(loaded, 0.2, 0).unwrap();
    assert_eq!(s.train.class_counts(), vec![4, 4, 4]);
    assert_eq!(s.test.class_counts(), vec![1, 1, 1]);
    assert_eq!(
        (
            s.train.shape.channels,
            s.train.shape.height,
            s.train.shape.width
        ),
        (3, 16, 16)
    );
    // The val image of wnid n02 (listed first) carries label 1.
    assert_eq!(s.test.labels, vec![1, 0, 2]);
    // An annotation naming an unknown wnid.
    let ann = t.0.join("val").join("val_annotations.txt");
    let text = std::fs::read_to_string(&ann).unwrap() + "val_0.JPEG\tn99\t0\t0\t1\t1\n";
    std::fs::write(&ann, text).unwrap();
    let e = scan_tiny_imagenet(&t.0).unwrap_err().to_string();
    assert!(e.contains("line 4: wnid `n99`"), "{e}");
    // A wnid without training images.
    std::fs::remove_dir_all(t.0.join("train").join("n03")).unwrap();
    let e = scan_tiny_imagenet(&t.0).unwrap_err().to_string();
    assert!(e.contains("class `n03` of wnids.txt"), "{e}");
}

/// Synthetic CIFAR-100 records: coarse label, fine label, 3072 pixels.
fn cifar100_records(labels: &[(u8, u8)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &(coarse, fine)) in labels.iter().enumerate() {
        out.push(coarse);
        out.push(fine);
        out.extend((0..3072).map(|p| ((p + i) % 251) as u8));
    }
    out
}

#[test]
fn cifar100_reads_fine_or_coarse_labels_and_refuses_bad_files() {
    let t = TempDir::new("c100");
    std::fs::write(
        t.0.join("train.bin"),
        cifar100_records(&[(3, 99), (19, 0), (0, 42)]),
    )
    .unwrap();
    std::fs::write(t.0.join("test.bin"), cifar100_records(&[(7, 7)])).unwrap();
    let fine = load_cifar100(&t.0, Cifar100Label::Fine).unwrap();
    assert_eq!(fine.train.labels, vec![99, 0, 42]);
    assert_eq!(fine.train.classes, 100);
    assert_eq!(fine.train.pixels.len(), 3 * 3072);
    assert_eq!(fine.train.pixels[3072], 1, "the second image's first pixel");
    assert_eq!((fine.test.len(), fine.test.shape.height), (1, 32));
    let coarse = load_cifar100(&t.0, Cifar100Label::Coarse).unwrap();
    assert_eq!(coarse.train.labels, vec![3, 19, 0]);
    assert_eq!(coarse.train.classes, 20);
    // A coarse label out of range, a truncated file, a missing one.
    std::fs::write(t.0.join("test.bin"), cifar100_records(&[(20, 1)])).unwrap();
    let e = load_cifar100(&t.0, Cifar100Label::Coarse)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("test.bin") && e.contains("label 20 at index 0 is out of range 0..20"),
        "{e}"
    );
    let mut short = cifar100_records(&[(1, 1)]);
    short.pop();
    std::fs::write(t.0.join("test.bin"), short).unwrap();
    let e = load_cifar100(&t.0, Cifar100Label::Fine)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a whole number of CIFAR-100 records"), "{e}");
    std::fs::remove_file(t.0.join("test.bin")).unwrap();
    let e = load_cifar100(&t.0, Cifar100Label::Fine)
        .unwrap_err()
        .to_string();
    assert!(e.contains("test.bin") && e.contains("not found"), "{e}");
}
