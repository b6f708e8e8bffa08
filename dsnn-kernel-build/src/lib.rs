//! Compiles dsnn's CUDA kernel sources (`kernels/*.cu` of `dsnn-core` and
//! `dsnn-infer`), the one job both crates' build scripts and emulation tests
//! share:
//!
//! * [`compile_ptx`]: with the `cuda` feature, a build script turns each
//!   kernel file into PTX with nvcc (loaded at run time by the crate's
//!   `src/cuda.rs`);
//! * [`build_emulation`]: on machines without a GPU, a test compiles the same
//!   file as host C++20 under the small CUDA emulation in
//!   `dsnn-core/kernels/emu/` and loads it, to compare every kernel with the
//!   CPU path.
//!
//! Conventions: nvcc is `$NVCC`, else `nvcc` on `PATH`. The PTX is built for
//! a list of architectures, `DSNN_PTX_ARCHS` (comma-separated compute
//! capabilities, e.g. `80,86,89,90`), by default [`DEFAULT_PTX_ARCHS`] plus
//! `CUDA_COMPUTE_CAP` when that names another one (it is the architecture
//! candle's own kernels are built for). A crate embeds every variant and, at
//! run time, loads the one [`select_ptx`] picks for the device: the highest
//! architecture not above the device's, whose PTX the driver compiles for
//! it (PTX is forward compatible, so cards newer than the list's newest use
//! that). The C++ compiler is `$CXX`, else `c++`; a test run with
//! `DSNN_REQUIRE_CXX` set fails instead of skipping when it is missing.
#![warn(missing_docs)]

pub use libloading;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The architectures PTX is built for when `DSNN_PTX_ARCHS` is unset:
/// Ampere (A100: 80; A10, RTX 30: 86), Ada (L4, L40, RTX 40: 89) and Hopper
/// (H100, H200: 90). Blackwell and later cards JIT the Hopper PTX.
pub const DEFAULT_PTX_ARCHS: &[&str] = &["80", "86", "89", "90"];

/// One PTX variant of a kernel file, as a crate embeds it (the build script
/// writes the list; see [`compile_ptx`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ptx {
    /// The compute capability it was built for, as nvcc's `compute_<arch>`
    /// names it: `86`, or `90a` (architecture-specific: loads on 9.0 only).
    pub arch: &'static str,
    /// The PTX text.
    pub text: &'static str,
}

/// Why no embedded PTX fits a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PtxSelectError {
    /// Every variant targets a newer architecture than the device's (or an
    /// architecture-specific one of another device).
    #[error(
        "no PTX for compute capability {major}.{minor}: the kernels were built for {built} \
         (rebuild with DSNN_PTX_ARCHS including {major}{minor}; see docs/gpu.md)"
    )]
    NoneFits {
        /// The device's major version.
        major: u32,
        /// The device's minor version.
        minor: u32,
        /// The architectures built, comma-separated.
        built: String,
    },
    /// A variant's architecture is not `<digits>[a|f]`.
    #[error("embedded PTX has an unreadable architecture `{0}`")]
    BadArch(String),
}

/// An architecture `<digits>[suffix]` split into its number and suffix
/// (`"90a"` -> `(90, "a")`), after an optional `sm_`/`compute_` prefix.
fn parse_arch(arch: &str) -> Option<(u32, &str)> {
    let a = arch.trim();
    let a = a
        .strip_prefix("compute_")
        .or_else(|| a.strip_prefix("sm_"))
        .unwrap_or(a);
    let digits = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
    let (num, suffix) = a.split_at(digits);
    if num.is_empty() || !matches!(suffix, "" | "a" | "f") {
        return None;
    }
    Some((num.parse().ok()?, suffix))
}

/// The variant to load on a device of compute capability `major.minor`:
/// among the portable variants (no suffix) built for at most the device's
/// architecture, the newest; an architecture-specific variant (`90a`) only
/// on exactly its architecture, where it is preferred.
pub fn select_ptx(variants: &[Ptx], major: u32, minor: u32) -> Result<&Ptx, PtxSelectError> {
    let device = major * 10 + minor;
    let mut best: Option<(u32, bool, &Ptx)> = None;
    for v in variants {
        let (cap, suffix) =
            parse_arch(v.arch).ok_or_else(|| PtxSelectError::BadArch(v.arch.into()))?;
        let specific = !suffix.is_empty();
        let fits = if specific {
            cap == device
        } else {
            cap <= device
        };
        if fits && best.is_none_or(|(c, s, _)| (cap, specific) > (c, s)) {
            best = Some((cap, specific, v));
        }
    }
    best.map(|(_, _, v)| v)
        .ok_or_else(|| PtxSelectError::NoneFits {
            major,
            minor,
            built: variants
                .iter()
                .map(|v| v.arch)
                .collect::<Vec<_>>()
                .join(","),
        })
}

/// The architectures to build PTX for (see the crate's conventions).
/// Panics with what to set (build scripts report by panicking).
pub fn ptx_archs() -> Vec<String> {
    println!("cargo::rerun-if-env-changed=DSNN_PTX_ARCHS");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let check = |arch: &str, var: &str| -> String {
        let arch = arch.trim();
        match parse_arch(arch) {
            Some((cap, suffix)) => format!("{cap}{suffix}"),
            None => panic!(
                "{var}: `{arch}` is not a compute capability (e.g. 90 for Hopper, 80 for Ampere)"
            ),
        }
    };
    let mut archs: Vec<String> = match std::env::var("DSNN_PTX_ARCHS") {
        Ok(list) => list
            .split(',')
            .filter(|a| !a.trim().is_empty())
            .map(|a| check(a, "DSNN_PTX_ARCHS"))
            .collect(),
        Err(_) => {
            let mut archs: Vec<String> = DEFAULT_PTX_ARCHS.iter().map(|a| a.to_string()).collect();
            if let Ok(cap) = std::env::var("CUDA_COMPUTE_CAP") {
                archs.push(check(&cap, "CUDA_COMPUTE_CAP"));
            }
            archs
        }
    };
    archs.sort_by(|a, b| parse_arch(a).cmp(&parse_arch(b)));
    archs.dedup();
    if archs.is_empty() {
        panic!("DSNN_PTX_ARCHS is empty: name at least one compute capability (e.g. 80,86,89,90)");
    }
    archs
}

/// For a build script: compiles `kernels/<name>.cu` of the package being
/// built to PTX for every architecture of [`ptx_archs`]
/// (`$OUT_DIR/<name>.compute_<arch>.ptx`), and writes
/// `$OUT_DIR/<name>.ptx.rs`, the list of variants as a `&[Ptx]` expression
/// for `include!`. Tells cargo when to rerun; panics (the build script's way
/// to fail) naming what is missing.
///
/// `--fmad=false`: no `a*b+c` contraction, as in Rust, so that float
/// kernels agree with the CPU path bit for bit.
pub fn compile_ptx(names: &[&str]) {
    println!("cargo::rerun-if-env-changed=NVCC");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    let archs = ptx_archs();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in names {
        let src = format!("kernels/{name}.cu");
        println!("cargo::rerun-if-changed={src}");
        let mut list = String::from(
            "// Written by dsnn-kernel-build::compile_ptx: one PTX variant per architecture.\n&[\n",
        );
        for arch in &archs {
            let ptx = out_dir.join(format!("{name}.compute_{arch}.ptx"));
            let status = Command::new(&nvcc)
                .args(["--ptx", "-O3", "-std=c++17", "--fmad=false"])
                .arg(format!("-arch=compute_{arch}"))
                .arg("-o")
                .arg(&ptx)
                .arg(&src)
                .status()
                .unwrap_or_else(|e| {
                    panic!("cannot run `{nvcc}` ({e}): the `cuda` feature needs nvcc on PATH or in $NVCC (see docs/gpu.md)")
                });
            if !status.success() {
                panic!("`{nvcc}` failed on {src} for compute_{arch} ({status})");
            }
            list.push_str(&format!(
                "    dsnn_kernel_build::Ptx {{ arch: {arch:?}, text: include_str!({:?}) }},\n",
                ptx.display().to_string()
            ));
        }
        list.push_str("]\n");
        let rs = out_dir.join(format!("{name}.ptx.rs"));
        std::fs::write(&rs, list).unwrap_or_else(|e| panic!("cannot write {}: {e}", rs.display()));
    }
}

/// For a test: compiles `launch_cpp` (a file that includes the kernels and
/// the emulation header and exports one `emu_<kernel>` wrapper per kernel)
/// as a host C++20 shared library and loads it as an [`Emulation`]. `tag` names the temporary
/// directory. `None`, with a line on stderr, when there is no usable
/// compiler and `DSNN_REQUIRE_CXX` is unset; panics when it is set, or when
/// the sources do not compile.
pub fn build_emulation(launch_cpp: &Path, tag: &str) -> Option<Emulation> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    let required = std::env::var_os("DSNN_REQUIRE_CXX").is_some();
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let so = dir.join(format!("lib{tag}.so"));
    let out = match Command::new(&cxx)
        .args([
            "-std=c++20",
            "-O2",
            "-ffp-contract=off",
            "-fPIC",
            "-shared",
            "-pthread",
        ])
        .arg("-o")
        .arg(&so)
        .arg(launch_cpp)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            assert!(
                !required,
                "no C++ compiler `{cxx}` ({e}), and DSNN_REQUIRE_CXX is set (CI)"
            );
            eprintln!("skipped: no C++ compiler `{cxx}` ({e})");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("<barrier>") || stderr.contains("c++20") {
            assert!(
                !required,
                "`{cxx}` lacks C++20, and DSNN_REQUIRE_CXX is set (CI): {stderr}"
            );
            eprintln!("skipped: `{cxx}` lacks C++20 (<barrier>): {stderr}");
            return None;
        }
        panic!("compiling the kernels under the emulation failed:\n{stderr}");
    }
    // SAFETY: the library was just built from the caller's own sources; its
    // initialisers are the emulation's static objects only.
    let lib = unsafe { libloading::Library::new(&so) }.expect("load the emulation library");
    // Loaded: the file is no longer needed.
    let _ = std::fs::remove_dir_all(&dir);
    Some(Emulation { lib })
}

/// [`build_emulation`] once per `launch_cpp` and process: the library every
/// test of a test binary shares (compiling it takes seconds). `None` as
/// `build_emulation` says.
pub fn shared_emulation(launch_cpp: &Path, tag: &str) -> Option<&'static Emulation> {
    type Built = Mutex<HashMap<PathBuf, Option<&'static Emulation>>>;
    static BUILT: OnceLock<Built> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    *built
        .entry(launch_cpp.to_path_buf())
        // Leaked on purpose: the library stays loaded until the process ends.
        .or_insert_with(|| build_emulation(launch_cpp, tag).map(|e| &*Box::leak(Box::new(e))))
}

/// Kernels compiled as host C++ by [`build_emulation`], each reachable
/// through its `emu_<kernel>` wrapper.
#[derive(Debug)]
pub struct Emulation {
    lib: libloading::Library,
}

impl Emulation {
    /// The wrapper of kernel `name` (the symbol `emu_<name>`), as the
    /// function pointer type `T`. Panics when the library has no such symbol.
    ///
    /// # Safety
    /// `T` must be the wrapper's exact C function signature (an
    /// `extern "C" fn` pointer type).
    pub unsafe fn kernel<T: Copy>(&self, name: &str) -> T {
        let sym = format!("emu_{name}\0");
        // SAFETY: the caller names the symbol's type.
        unsafe { *self.lib.get::<T>(sym.as_bytes()).expect(name) }
    }
}
