//! Image data sets through the command line: an experiment on a folder of
//! PNG/JPEG images the test makes runs end to end with `dsnn run` and a
//! second run reads the cache instead of decoding; `dsnn check` refuses a
//! folder with one class or an empty class folder before any trial;
//! `dsnn train` reads CIFAR-100 with `--data label=coarse`.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{output_text as text, results};

fn dsnn(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "dsnn_core=info")
        .output()
        .expect("run dsnn")
}

/// Three classes of `n` 20x14 images: red PNGs, green JPEGs, grey PNGs,
/// each with a bright square at a varying place.
fn make_folder(root: &Path, n: u32) {
    for (c, class) in ["apple", "bean", "cloud"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for k in 0..n {
            let img = image::RgbImage::from_fn(20, 14, |x, y| {
                if (x + 3 * k) % 20 < 6 && (y + k) % 14 < 5 {
                    image::Rgb([250, 250, 250])
                } else {
                    [
                        image::Rgb([200, 30, 30]),
                        image::Rgb([30, 200, 30]),
                        image::Rgb([90, 90, 90]),
                    ][c]
                }
            });
            let name = match c {
                1 => format!("{k}.jpg"),
                _ => format!("{k}.png"),
            };
            if c == 2 {
                image::DynamicImage::ImageRgb8(img)
                    .to_luma8()
                    .save(dir.join(name))
                    .unwrap();
            } else {
                img.save(dir.join(name)).unwrap();
            }
        }
    }
}

fn experiment(name: &str, data_path: &str) -> String {
    format!(
        r#"name = "{name}"
seed = 3
objectives = ["loss", "energy"]

[data]
dataset = "image-folder"
path = "{data_path}"
size = 16
resize = "crop"
validation_fraction = 0.25
augment = {{ crop_padding = 2, flip = true }}

[model]
backbone = "lenet5"
shift_type = "Q"
optimizer = "Adam"
lr = 0.01
batch_size = 8

[space]
hyperparameters = [
  {{ name = "lr", type = "float", lower = 0.001, upper = 0.05, log = true, default = 0.01 }},
  {{ name = "weight_bits", type = "int", lower = 2, upper = 5, default = 5 }},
]

[energy]
meter = {{ kind = "opcount" }}

[optimizer]
kind = "random"

[fidelity]
kind = "fixed"
max = 1

[stop]
trials = 2
"#
    )
}

#[test]
fn an_image_folder_experiment_runs_and_the_second_run_reads_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(&dir.path().join("images"), 8);
    std::fs::write(dir.path().join("first.toml"), experiment("first", "images")).unwrap();
    let check = dsnn(&["check", "first.toml"], dir.path());
    assert!(check.status.success(), "{}", text(&check));
    let out = dsnn(&["run", "first.toml"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    assert!(log.contains("decoding 24 images"), "{log}");
    assert!(log.contains("wrote image cache"), "{log}");
    assert!(!log.contains("image cache hit"), "{log}");
    let cache_dir = dir.path().join("images").join(".dsnn-cache");
    let caches: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(caches.len(), 1, "{caches:?}");
    let done = results(&dir.path().join("runs").join("first"));
    // Two trials and the default configuration (reported apart).
    assert_eq!(done.len(), 3, "{done:?}");
    for r in &done {
        assert!(r["report"]["outcome"]["Success"].is_array(), "{r}");
        let m = &r["report"]["metrics"];
        // 24 images: 20% (stratified, 2 of each class) is the test split;
        // a quarter of the other 18 the validation split.
        assert_eq!(m["validation_images"], 5.0, "{r}");
        assert_eq!(m["train_images"], 13.0, "{r}");
        assert!(m["loss"].as_f64().unwrap() <= 1.0, "{r}");
    }
    // A second run (another name, same data and settings) decodes nothing.
    std::fs::write(
        dir.path().join("second.toml"),
        experiment("second", "images"),
    )
    .unwrap();
    let out = dsnn(&["run", "second.toml"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    assert!(
        log.contains("image cache hit") && log.contains("24 images of 3 classes"),
        "{log}"
    );
    assert!(!log.contains("decoding 24"), "{log}");
    assert_eq!(results(&dir.path().join("runs").join("second")).len(), 3);
}

#[test]
fn check_refuses_a_folder_with_one_class_or_an_empty_class_folder() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    make_folder(&images, 2);
    std::fs::remove_dir_all(images.join("bean")).unwrap();
    std::fs::remove_dir_all(images.join("cloud")).unwrap();
    std::fs::write(dir.path().join("e.toml"), experiment("e", "images")).unwrap();
    let out = dsnn(&["check", "e.toml"], dir.path());
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("e.toml:7") && t.contains("holds one class folder (`apple`)"),
        "{t}"
    );
    std::fs::create_dir_all(images.join("bean")).unwrap();
    let out = dsnn(&["check", "e.toml"], dir.path());
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("bean") && t.contains("holds no PNG or JPEG files"),
        "{t}"
    );
    // A setting of the data set that is out of range, located.
    std::fs::write(images.join("bean").join("0.png"), b"").unwrap();
    let bad = experiment("e", "images").replace("size = 16", "size = [16, 0]");
    std::fs::write(dir.path().join("e.toml"), bad).unwrap();
    let out = dsnn(&["check", "e.toml"], dir.path());
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("e.toml:8") && t.contains("is not an image size"),
        "{t}"
    );
}

#[test]
fn train_reads_cifar100_coarse_labels() {
    let dir = tempfile::tempdir().unwrap();
    let records = |n: usize| -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            out.push((i % 20) as u8);
            out.push((i % 100) as u8);
            out.extend((0..3072).map(|p| ((p * (i % 20 + 1)) % 256) as u8));
        }
        out
    };
    std::fs::write(dir.path().join("train.bin"), records(60)).unwrap();
    std::fs::write(dir.path().join("test.bin"), records(20)).unwrap();
    let args = [
        "train",
        "--dataset",
        "cifar100",
        "--data-dir",
        ".",
        "--data",
        "label=coarse",
        "--data",
        "augment=false",
        "--backbone",
        "lenet5",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--device",
        "cpu",
    ];
    let out = dsnn(&args, dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("on 20 images"), "{t}");
    let mut bad = args.to_vec();
    bad[6] = "label=medium";
    let out = dsnn(&bad, dir.path());
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("unknown label `medium`"),
        "{t}"
    );
}

#[test]
fn train_reads_a_tiny_imagenet_layout_and_refuses_common_keys_in_data() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let wnids = ["n001", "n002", "n003"];
    std::fs::write(root.join("wnids.txt"), wnids.join("\n")).unwrap();
    std::fs::create_dir_all(root.join("val").join("images")).unwrap();
    let mut ann = String::new();
    for (c, wnid) in wnids.iter().enumerate() {
        let images = root.join("train").join(wnid).join("images");
        std::fs::create_dir_all(&images).unwrap();
        for k in 0..6u32 {
            let img = image::RgbImage::from_fn(24, 24, |x, y| {
                let v = ((x + y + k) % 24) as u8 * 10;
                image::Rgb([v, (60 * c) as u8, 255 - v])
            });
            img.save(images.join(format!("{wnid}_{k}.JPEG"))).unwrap();
            if k < 2 {
                let name = format!("val_{c}_{k}.JPEG");
                img.save(root.join("val").join("images").join(&name))
                    .unwrap();
                ann.push_str(&format!("{name}\t{wnid}\t0\t0\t23\t23\n"));
            }
        }
    }
    std::fs::write(root.join("val").join("val_annotations.txt"), ann).unwrap();
    let args = [
        "train",
        "--dataset",
        "tiny-imagenet",
        "--data-dir",
        ".",
        "--data",
        "size=16",
        "--data",
        "augment={crop_padding=2,flip=true}",
        "--backbone",
        "lenet5",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--device",
        "cpu",
    ];
    let out = dsnn(&args, root);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("on 6 images") && t.contains("decoding 24 images"),
        "{t}"
    );
    assert!(root.join(".dsnn-cache").is_dir(), "{t}");
    let again = dsnn(&args, root);
    assert!(text(&again).contains("image cache hit"), "{}", text(&again));
    let mut bad = args.to_vec();
    bad[6] = "path=/elsewhere";
    let out = dsnn(&bad, root);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("has its own flag here, --data-dir"),
        "{t}"
    );
    bad[6] = "test_fraction=0.5";
    let out = dsnn(&bad, root);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("its own test split"),
        "{t}"
    );
}

#[test]
fn an_unreadable_image_stops_the_run_naming_it_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    make_folder(&images, 4);
    std::fs::write(
        images.join("bean").join("broken.jpg"),
        b"\xff\xd8\xff\xe0 cut",
    )
    .unwrap();
    std::fs::write(dir.path().join("e.toml"), experiment("e", "images")).unwrap();
    let out = dsnn(&["run", "e.toml"], dir.path());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("broken.jpg") && t.contains("not a readable PNG or JPEG image"),
        "{t}"
    );
    let skipping = experiment("s", "images").replace(
        "resize = \"crop\"",
        "resize = \"crop\"\nskip_unreadable = true",
    );
    std::fs::write(dir.path().join("s.toml"), skipping).unwrap();
    let out = dsnn(&["run", "s.toml"], dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("skipping") && t.contains("broken.jpg"), "{t}");
    assert_eq!(results(&dir.path().join("runs").join("s")).len(), 3);
}

/// The accuracy line of `dsnn infer` (its first line on stdout).
fn accuracy_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn export_and_infer_of_an_image_folder_model_use_the_recorded_data_settings() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(&dir.path().join("images"), 8);
    let out = dsnn(
        &[
            "train",
            "--dataset",
            "image-folder",
            "--data-dir",
            "images",
            "--data",
            "size=16",
            "--data",
            "resize=pad",
            "--backbone",
            "lenet5",
            "--shift-type",
            "q",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--seed",
            "4",
            "--device",
            "cpu",
            "--save",
            "w.safetensors",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let spec = dsnn_infer::read_trained_spec(&dir.path().join("w.safetensors")).unwrap();
    let record = spec.input_transform.unwrap().data.unwrap();
    assert_eq!(record.dataset, "image-folder");
    assert_eq!(record.settings["size"], 16);
    assert_eq!(record.settings["resize"], "pad");
    assert_eq!(record.split_seed, 4);
    let out = dsnn(&["export", "w.safetensors", "-o", "m.dsnnint"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    // No --dataset, --data or --seed: the model's record gives them.
    let recorded = dsnn(
        &[
            "infer",
            "m.dsnnint",
            "--data-dir",
            "images",
            "--compare",
            "w.safetensors",
        ],
        dir.path(),
    );
    let t = text(&recorded);
    assert!(recorded.status.success(), "{t}");
    assert!(
        t.contains("image-folder as trained") && t.contains("size = 16"),
        "{t}"
    );
    // 24 images: the 20% test split held out by seed 4, 2 of each class.
    assert!(accuracy_line(&recorded).contains("on 6 images"), "{t}");
    assert!(t.contains("top-1 agreement"), "{t}");
    // The same run with every setting given again.
    let given = dsnn(
        &[
            "infer",
            "m.dsnnint",
            "--dataset",
            "image-folder",
            "--data-dir",
            "images",
            "--data",
            "size=16",
            "--data",
            "resize=pad",
            "--seed",
            "4",
        ],
        dir.path(),
    );
    assert!(given.status.success(), "{}", text(&given));
    let accuracy = |out: &Output| accuracy_line(out).split(';').next().unwrap().to_string();
    assert_eq!(accuracy(&given), accuracy(&recorded));
    // --data overrides a recorded setting: 20x20 images do not fit the model.
    let other = dsnn(
        &[
            "infer",
            "m.dsnnint",
            "--data-dir",
            "images",
            "--data",
            "size=20",
        ],
        dir.path(),
    );
    let t = text(&other);
    assert!(
        !other.status.success() && t.contains("images are 3x20x20") && t.contains("takes 3x16x16"),
        "{t}"
    );
}
