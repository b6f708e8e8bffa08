//! With the `cuda` feature: compiles `kernels/int_ops.cu` to PTX with nvcc
//! (loaded at run time by `src/cuda.rs`; conventions in `dsnn-kernel-build`).
//! Without it: does nothing.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "cuda")]
    dsnn_kernel_build::compile_ptx(&["int_ops"]);
}
