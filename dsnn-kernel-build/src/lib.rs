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
//! Conventions: nvcc is `$NVCC`, else `nvcc` on `PATH`; the architecture is
//! `CUDA_COMPUTE_CAP` (e.g. `90` for Hopper), else the first GPU that
//! `nvidia-smi` reports (`scripts/build-cuda.sh` sets both up on a machine
//! without a GPU). The C++ compiler is `$CXX`, else `c++`; a test run with
//! `DSNN_REQUIRE_CXX` set fails instead of skipping when it is missing.
#![warn(missing_docs)]

pub use libloading;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The compute capability to compile for: `CUDA_COMPUTE_CAP`, else the
/// first GPU's. Panics with what to set (build scripts report by panicking).
fn compute_cap() -> String {
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if let Ok(cap) = std::env::var("CUDA_COMPUTE_CAP") {
        let cap = cap.trim().trim_start_matches("sm_").to_string();
        if cap.is_empty() || !cap.chars().all(|c| c.is_ascii_alphanumeric()) {
            panic!("CUDA_COMPUTE_CAP=`{cap}` is not a compute capability (e.g. 90 for Hopper, 80 for Ampere)");
        }
        return cap;
    }
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=compute_cap", "--format=csv,noheader"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let first = text.lines().next().unwrap_or("").trim().replace('.', "");
            if first.is_empty() {
                panic!("nvidia-smi reported no GPU: set CUDA_COMPUTE_CAP (e.g. 90 for Hopper)");
            }
            first
        }
        _ => panic!(
            "set CUDA_COMPUTE_CAP (e.g. 90 for Hopper) to build the `cuda` feature without a GPU \
             (nvidia-smi is not available); scripts/build-cuda.sh does this"
        ),
    }
}

/// For a build script: compiles `kernels/<name>.cu` of the package being
/// built to `$OUT_DIR/<name>.ptx` for each name, and tells cargo when to
/// rerun. Panics (the build script's way to fail) naming what is missing.
///
/// `--fmad=false`: no `a*b+c` contraction, as in Rust, so that float
/// kernels agree with the CPU path bit for bit.
pub fn compile_ptx(names: &[&str]) {
    println!("cargo::rerun-if-env-changed=NVCC");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    let cap = compute_cap();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in names {
        let src = format!("kernels/{name}.cu");
        println!("cargo::rerun-if-changed={src}");
        let ptx = out_dir.join(format!("{name}.ptx"));
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17", "--fmad=false"])
            .arg(format!("-arch=compute_{cap}"))
            .arg("-o")
            .arg(&ptx)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run `{nvcc}` ({e}): the `cuda` feature needs nvcc on PATH or in $NVCC (see docs/gpu.md)")
            });
        if !status.success() {
            panic!("`{nvcc}` failed on {src} ({status})");
        }
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
