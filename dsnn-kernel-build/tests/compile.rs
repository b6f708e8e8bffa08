//! The two compile paths on stand-ins: a tiny C++ library for the emulation
//! path, and a fake nvcc (a shell script) for the PTX path, so that both run
//! on a machine without CUDA.

use dsnn_kernel_build::{build_emulation, compile_ptx, shared_emulation};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn an_emulation_library_is_built_and_loaded() {
    let dir = tempfile_dir("emu-ok");
    let src = dir.join("launch.cpp");
    write(
        &src,
        "#include <vector>\nextern \"C\" int emu_twice(int x) { std::vector<int> v{x, x}; return v[0] + v[1]; }\n",
    );
    let Some(lib) = build_emulation(&src, "dsnn_kernel_build_test") else {
        return; // no C++ compiler, and DSNN_REQUIRE_CXX unset: reported on stderr
    };
    // SAFETY: the signature is the one written above.
    let twice: unsafe extern "C" fn(i32) -> i32 = unsafe { lib.kernel("twice") };
    assert_eq!(unsafe { twice(21) }, 42);
    // Shared: built once per file and process.
    let a = shared_emulation(&src, "dsnn_kernel_build_shared").expect("built above");
    let b = shared_emulation(&src, "dsnn_kernel_build_shared").expect("built above");
    assert!(std::ptr::eq(a, b));
    let twice: unsafe extern "C" fn(i32) -> i32 = unsafe { b.kernel("twice") };
    assert_eq!(unsafe { twice(5) }, 10);
}

#[test]
fn a_source_that_does_not_compile_is_an_error_with_the_compiler_output() {
    let dir = tempfile_dir("emu-bad");
    let src = dir.join("launch.cpp");
    write(&src, "extern \"C\" int emu_broken( { return }\n");
    let has_compiler = std::process::Command::new(std::env::var("CXX").unwrap_or("c++".into()))
        .arg("--version")
        .output()
        .is_ok();
    let r = std::panic::catch_unwind(|| build_emulation(&src, "dsnn_kernel_build_bad"));
    if has_compiler {
        let Err(e) = r else {
            panic!("a broken source must fail")
        };
        let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains("compiling the kernels under the emulation failed"),
            "{msg}"
        );
        assert!(
            msg.contains("emu_broken"),
            "the compiler's message is shown: {msg}"
        );
    }
}

#[test]
fn ptx_is_compiled_with_the_documented_nvcc_arguments() {
    let dir = tempfile_dir("ptx");
    let log = dir.join("args.txt");
    let nvcc = dir.join("nvcc");
    // Records its arguments and writes the file named after -o.
    write(
        &nvcc,
        &format!(
            "#!/bin/sh\necho \"$@\" >> {}\nwhile [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then echo ptx > \"$2\"; fi; shift; done\n",
            log.display()
        ),
    );
    std::fs::set_permissions(&nvcc, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::env::set_var("NVCC", &nvcc);
    std::env::set_var("CUDA_COMPUTE_CAP", "sm_90");
    std::env::set_var("OUT_DIR", &dir);
    compile_ptx(&["first", "second"]);
    let args = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = args.lines().collect();
    assert_eq!(lines.len(), 2, "{args}");
    for (line, name) in lines.iter().zip(["first", "second"]) {
        for want in [
            "--ptx",
            "--fmad=false",
            "-arch=compute_90",
            &format!("kernels/{name}.cu"),
        ] {
            assert!(
                line.split(' ').any(|a| a == want),
                "{want} missing in `{line}`"
            );
        }
        assert!(dir.join(format!("{name}.ptx")).exists());
    }

    // A failing nvcc, then a missing one: the build stops naming the cause.
    write(&nvcc, "#!/bin/sh\nexit 3\n");
    let e = std::panic::catch_unwind(|| compile_ptx(&["third"])).expect_err("nvcc failed");
    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("failed on kernels/third.cu"), "{msg}");
    std::env::set_var("NVCC", dir.join("no-such-nvcc"));
    let e = std::panic::catch_unwind(|| compile_ptx(&["fourth"])).expect_err("no nvcc");
    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("needs nvcc"), "{msg}");
    std::env::set_var("CUDA_COMPUTE_CAP", "9.0!");
    let e = std::panic::catch_unwind(|| compile_ptx(&["fifth"])).expect_err("bad cap");
    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("is not a compute capability"), "{msg}");
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dsnn-kernel-build-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
