//! A file cache of decoded, resized images, so that a second trial (or a
//! second run) on an image folder does not decode every file again.
//!
//! The file holds a header (magic, format version), the key it was built
//! for (the decoding settings and every source file's path, label, size
//! and modification time), the length and CRC-32 of the payload, then the
//! payload (class names, the images of each split, skipped files). A file
//! whose key differs is stale, one that fails any check is corrupt: both
//! are rebuilt with a warning, never used.

use super::images::SkippedFile;
use super::Dataset;
use crate::backbone::InputShape;
use crate::error::{CoreError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"DSNNIMGC";
const VERSION: u32 = 1;

/// What an image cache file holds.
#[derive(Debug, Clone)]
pub struct CachedImages {
    /// Class names, by label.
    pub classes: Vec<String>,
    /// Named splits (`train`, `test`, or `all` before a seeded split).
    pub parts: Vec<(String, Dataset)>,
    /// Files skipped when the cache was built.
    pub skipped: Vec<SkippedFile>,
}

/// What became of an attempt to read a cache file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRead {
    /// The file is valid for the key: its images were used.
    Hit,
    /// There is no cache file yet.
    Missing,
    /// The file was built for other settings or other source files.
    Stale,
    /// The file fails a check (truncated, bad checksum, not a cache).
    Corrupt(String),
}

/// A 64-bit FNV-1a hash: stable across builds and platforms (file names
/// of caches; the full key inside the file decides validity).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Reads the cache at `path` if it was built for `key`.
pub fn read_cache(path: &Path, key: &str) -> (Option<CachedImages>, CacheRead) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (None, CacheRead::Missing),
        Err(e) => return (None, CacheRead::Corrupt(format!("unreadable: {e}"))),
    };
    match parse(&bytes, key) {
        Ok(Some(c)) => (Some(c), CacheRead::Hit),
        Ok(None) => (None, CacheRead::Stale),
        Err(why) => (None, CacheRead::Corrupt(why)),
    }
}

/// Writes the cache for `key` atomically (a temporary file renamed into
/// place, so a concurrent reader sees the old file or the new one).
pub fn write_cache(path: &Path, key: &str, content: &CachedImages) -> Result<()> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| CoreError::Io { path: p, source: e }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let payload = payload(content);
    let mut out = Vec::with_capacity(payload.len() + key.len() + 40);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(key.len() as u64).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    let tmp = tmp_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&out).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CoreError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    })
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn payload(c: &CachedImages) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(c.classes.len() as u32).to_le_bytes());
    for name in &c.classes {
        put_str(&mut out, name);
    }
    out.extend_from_slice(&(c.parts.len() as u32).to_le_bytes());
    for (name, d) in &c.parts {
        put_str(&mut out, name);
        out.extend_from_slice(&(d.len() as u64).to_le_bytes());
        for v in [d.shape.channels, d.shape.height, d.shape.width] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        out.extend_from_slice(&d.labels);
        out.extend_from_slice(&d.pixels);
    }
    out.extend_from_slice(&(c.skipped.len() as u32).to_le_bytes());
    for s in &c.skipped {
        put_str(&mut out, &s.path.to_string_lossy());
        put_str(&mut out, &s.reason);
    }
    out
}

/// A bounds-checked reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(format!("truncated (in the {what})")),
        }
    }

    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn len(&mut self, what: &str) -> std::result::Result<usize, String> {
        usize::try_from(self.u64(what)?).map_err(|_| format!("impossible length in the {what}"))
    }

    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let n = self.u32(what)? as usize;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("the {what} is not UTF-8"))
    }
}

/// Parses a cache file: `Ok(None)` when it was built for another key,
/// `Err` when it is not a valid cache file.
fn parse(bytes: &[u8], key: &str) -> std::result::Result<Option<CachedImages>, String> {
    let mut c = Cursor { bytes, at: 0 };
    if c.take(8, "header")? != MAGIC {
        return Err("not a dsnn image cache (wrong magic bytes)".into());
    }
    let version = c.u32("header")?;
    if version != VERSION {
        return Err(format!(
            "format version {version}, this dsnn reads version {VERSION}"
        ));
    }
    let key_len = c.len("key")?;
    if c.take(key_len, "key")? != key.as_bytes() {
        return Ok(None);
    }
    let payload_len = c.len("header")?;
    let crc = c.u32("header")?;
    let payload = c.take(payload_len, "payload")?;
    if c.at != bytes.len() {
        return Err(format!("{} bytes after the payload", bytes.len() - c.at));
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch (the payload was altered or partly written)".into());
    }
    parse_payload(payload).map(Some)
}

fn parse_payload(bytes: &[u8]) -> std::result::Result<CachedImages, String> {
    let mut c = Cursor { bytes, at: 0 };
    let n_classes = c.u32("class list")? as usize;
    if n_classes > 256 {
        return Err(format!("{n_classes} classes (at most 256)"));
    }
    let classes = (0..n_classes)
        .map(|_| c.string("class names"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let n_parts = c.u32("split list")? as usize;
    if n_parts > 16 {
        return Err(format!("{n_parts} splits (at most 16)"));
    }
    let mut parts = Vec::with_capacity(n_parts);
    for _ in 0..n_parts {
        let name = c.string("split name")?;
        let n = c.len("split")?;
        let (ch, h, w) = (
            c.u32("split")? as usize,
            c.u32("split")? as usize,
            c.u32("split")? as usize,
        );
        if !matches!(ch, 1 | 3) || h == 0 || w == 0 {
            return Err(format!("split `{name}` has images of {ch}x{h}x{w}"));
        }
        let labels = c.take(n, "labels")?.to_vec();
        if let Some(l) = labels.iter().find(|&&l| l as usize >= n_classes) {
            return Err(format!("label {l} out of range 0..{n_classes}"));
        }
        let pixel_len = n
            .checked_mul(ch * h * w)
            .ok_or_else(|| "impossible image count".to_string())?;
        let pixels = c.take(pixel_len, "pixels")?.to_vec();
        parts.push((
            name,
            Dataset {
                pixels,
                labels,
                shape: InputShape {
                    channels: ch,
                    height: h,
                    width: w,
                },
                classes: n_classes,
                pixel_max: 255.0,
            },
        ));
    }
    let n_skipped = c.u32("skipped files")? as usize;
    let mut skipped = Vec::with_capacity(n_skipped.min(1 << 16));
    for _ in 0..n_skipped {
        skipped.push(SkippedFile {
            path: PathBuf::from(c.string("skipped files")?),
            reason: c.string("skipped files")?,
        });
    }
    if c.at != bytes.len() {
        return Err("bytes left over after the payload".into());
    }
    Ok(CachedImages {
        classes,
        parts,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CachedImages {
        let d = Dataset {
            pixels: (0..2 * 3 * 4 * 5).map(|i| i as u8).collect(),
            labels: vec![0, 1],
            shape: InputShape {
                channels: 3,
                height: 4,
                width: 5,
            },
            classes: 2,
            pixel_max: 255.0,
        };
        CachedImages {
            classes: vec!["cat".into(), "dog".into()],
            parts: vec![("train".into(), d.clone()), ("test".into(), d.head(1))],
            skipped: vec![SkippedFile {
                path: "a/b.png".into(),
                reason: "broken".into(),
            }],
        }
    }

    /// A written cache reads back whole for its key, as stale for another
    /// key, and as corrupt after any single byte of it changes.
    #[test]
    fn round_trip_stale_and_every_corruption() {
        let dir = std::env::temp_dir().join(format!("dsnn-cache-unit-{}", std::process::id()));
        let path = dir.join("c.bin");
        write_cache(&path, "key", &sample()).unwrap();
        let (c, status) = read_cache(&path, "key");
        assert_eq!(status, CacheRead::Hit);
        let c = c.unwrap();
        assert_eq!(c.classes, sample().classes);
        assert_eq!(c.parts[0].1.pixels, sample().parts[0].1.pixels);
        assert_eq!(c.parts[1].1.labels, vec![0]);
        assert_eq!(c.skipped, sample().skipped);
        assert_eq!(read_cache(&path, "other").1, CacheRead::Stale);
        assert_eq!(read_cache(&dir.join("none"), "key").1, CacheRead::Missing);
        let good = std::fs::read(&path).unwrap();
        let key_end = 8 + 4 + 8 + 3;
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            let parsed = parse(&bad, "key");
            // A changed key or key length reads as another key's cache.
            if (12..key_end).contains(&i) {
                assert!(!matches!(parsed, Ok(Some(_))), "byte {i}");
            } else {
                assert!(parsed.is_err(), "flipping byte {i} went unnoticed");
            }
        }
        for cut in [0, 5, 12, good.len() / 2, good.len() - 1] {
            assert!(parse(&good[..cut], "key").is_err(), "cut at {cut}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
