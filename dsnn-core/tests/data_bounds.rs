//! Regression tests for hostile data files: every size a header announces is
//! checked against the bytes that follow before it is used, and the two
//! splits of a data set must agree on the image size.

use dsnn_core::data::{load_dataset, read_idx_images, DatasetName};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dsnn-bounds-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for v in [n, rows, cols] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    b
}

/// `count x rows x cols` overflowing 64 bits (here 2^31 x 2^31 x 4 = 2^64,
/// which wraps to the 0 pixel bytes present) was accepted, and slicing an
/// image of 2^62 pixels then panicked.
#[test]
fn an_idx_header_whose_size_overflows_is_an_error() {
    let dir = scratch("overflow");
    let path = dir.join("images-idx3-ubyte");
    std::fs::write(&path, idx_images(1 << 31, 1 << 31, 4, &[])).unwrap();
    let e = read_idx_images(&path).unwrap_err().to_string();
    assert!(
        e.contains("images-idx3-ubyte") && e.contains("more than 2^64"),
        "{e}"
    );
    // 2^32 - 1 images of 2^32 - 1 rows: the first product is near 2^64.
    std::fs::write(&path, idx_images(u32::MAX, u32::MAX, 2, &[1, 2])).unwrap();
    assert!(read_idx_images(&path).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Images of zero rows or columns, or no images at all, are not a data set.
#[test]
fn an_idx_file_without_pixels_is_an_error() {
    let dir = scratch("empty");
    let path = dir.join("images-idx3-ubyte");
    for (n, rows, cols) in [(5, 0, 28), (5, 28, 0), (0, 28, 28)] {
        std::fs::write(&path, idx_images(n, rows, cols, &[])).unwrap();
        let e = read_idx_images(&path).unwrap_err().to_string();
        assert!(e.contains("holds no images"), "{n} {rows}x{cols}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A test split of 3x3 images next to a training split of 2x2 images failed
/// only after an epoch, as a shape mismatch in a matrix product naming no
/// file; it is now an error at load time naming the test file.
#[test]
fn a_test_split_of_another_image_size_is_an_error_naming_it() {
    let dir = scratch("sizes");
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
    write("train-images-idx3-ubyte", idx_images(2, 2, 2, &[0; 8]));
    write("train-labels-idx1-ubyte", idx_labels(&[1, 2]));
    write("t10k-images-idx3-ubyte", idx_images(1, 3, 3, &[0; 9]));
    write("t10k-labels-idx1-ubyte", idx_labels(&[3]));
    let e = load_dataset(DatasetName::Mnist, &dir, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t10k-images-idx3-ubyte")
            && e.contains("test images are 1x3x3")
            && e.contains("train-images-idx3-ubyte")
            && e.contains("1x2x2"),
        "{e}"
    );
    // The same size loads.
    write("t10k-images-idx3-ubyte", idx_images(1, 2, 2, &[0; 4]));
    let s = load_dataset(DatasetName::Mnist, &dir, 0).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (2, 1));
    std::fs::remove_dir_all(&dir).unwrap();
}
