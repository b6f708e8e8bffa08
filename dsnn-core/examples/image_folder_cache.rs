//! Benchmark: loading an image folder by decoding every file, against
//! reading the cache of decoded images that the first load writes.
//!
//! Makes a Caltech101-like folder of JPEGs (`IMAGES` images, default 3000,
//! of 300x200 pixels in 10 classes) in a temporary directory, then times,
//! for `size` 32 and 64: a load without cache (scan + decode + resize), the
//! first load with the cache (the same, plus writing it) and a cache hit.
//!
//! ```sh
//! cargo run --release -p dsnn-core --example image_folder_cache
//! IMAGES=500 cargo run --release -p dsnn-core --example image_folder_cache
//! ```

use dsnn_core::data::image_folder::{load_images, scan_image_folder, CacheOutcome, CacheSetting};
use dsnn_core::data::images::ImageOptions;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let images: u32 = std::env::var("IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let root = std::env::temp_dir().join(format!("dsnn-imgf-bench-{}", std::process::id()));
    let classes = 10;
    for c in 0..classes {
        let dir = root.join(format!("class{c:02}"));
        std::fs::create_dir_all(&dir)?;
        for k in 0..images / classes {
            let img = image::RgbImage::from_fn(300, 200, |x, y| {
                image::Rgb([
                    ((x * (c + 1) + k) % 256) as u8,
                    ((y * 3 + c * 20) % 256) as u8,
                    (((x + y) / 2 + k * 7) % 256) as u8,
                ])
            });
            img.save(dir.join(format!("{k}.jpg")))?;
        }
    }
    println!(
        "{} JPEGs of 300x200 in {classes} classes, {} threads",
        images / classes * classes,
        rayon::current_num_threads()
    );
    println!("| size | decode, no cache (s) | first load + cache write (s) | cache hit (s) | decode / hit |");
    println!("|---|---|---|---|---|");
    for side in [32usize, 64] {
        let opts = ImageOptions {
            size: Some((side, side)),
            ..Default::default()
        };
        let t = Instant::now();
        let source = scan_image_folder(&root)?;
        let plain = load_images(&source, &opts, &CacheSetting::Off)?;
        let decode_s = t.elapsed().as_secs_f64();
        let cache = CacheSetting::In(root.join(format!(".cache-{side}")));
        let t = Instant::now();
        let source = scan_image_folder(&root)?;
        let first = load_images(&source, &opts, &cache)?;
        let first_s = t.elapsed().as_secs_f64();
        assert!(matches!(first.cache, CacheOutcome::Written { .. }));
        let t = Instant::now();
        let source = scan_image_folder(&root)?;
        let hit = load_images(&source, &opts, &cache)?;
        let hit_s = t.elapsed().as_secs_f64();
        assert!(matches!(hit.cache, CacheOutcome::Hit(_)));
        assert_eq!(hit.parts[0].1.pixels, plain.parts[0].1.pixels);
        println!(
            "| {side}x{side} | {decode_s:.3} | {first_s:.3} | {hit_s:.4} | {:.0}x |",
            decode_s / hit_s
        );
    }
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
