//! With the `cuda` feature: compiles `kernels/int_ops.cu` to PTX with nvcc
//! (loaded at run time by `src/cuda.rs`). Without it: does nothing.
//!
//! Same conventions as dsnn-core's build script: nvcc is `$NVCC`, else
//! `nvcc` on `PATH`; the architecture is `CUDA_COMPUTE_CAP` (e.g. `90`), else
//! the first GPU that `nvidia-smi` reports. `scripts/build-cuda.sh` sets both.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "cuda")]
    cuda::compile_kernels();
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::path::PathBuf;
    use std::process::Command;

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

    pub fn compile_kernels() {
        println!("cargo::rerun-if-env-changed=NVCC");
        let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
        let cap = compute_cap();
        let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let src = "kernels/int_ops.cu";
        println!("cargo::rerun-if-changed={src}");
        let ptx = out_dir.join("int_ops.ptx");
        // Integer kernels only: no float contraction question arises, but the
        // flags match dsnn-core's for one toolchain setup.
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17", "--fmad=false"])
            .arg(format!("-arch=compute_{cap}"))
            .arg("-o")
            .arg(&ptx)
            .arg(src)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run `{nvcc}` ({e}): the `cuda` feature needs nvcc on PATH or in $NVCC (see docs/gpu.md)")
            });
        if !status.success() {
            panic!("`{nvcc}` failed on {src} ({status})");
        }
    }
}
