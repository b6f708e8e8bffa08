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
fn ptx_is_compiled_for_every_architecture_with_the_documented_nvcc_arguments() {
    // One test changes the process environment (the other tests read none of it).
    let dir = tempfile_dir("ptx");
    let log = dir.join("args.txt");
    let nvcc = dir.join("nvcc");
    // Records its arguments and writes the file named after -o.
    write(
        &nvcc,
        &format!(
            "#!/bin/sh\necho \"$@\" >> {}\nwhile [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then echo \"ptx $2\" > \"$2\"; fi; shift; done\n",
            log.display()
        ),
    );
    std::fs::set_permissions(&nvcc, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::env::set_var("NVCC", &nvcc);
    std::env::remove_var("DSNN_PTX_ARCHS");
    std::env::set_var("CUDA_COMPUTE_CAP", "sm_75");
    std::env::set_var("OUT_DIR", &dir);
    compile_ptx(&["first", "second"]);
    let args = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = args.lines().collect();
    // The default list plus CUDA_COMPUTE_CAP, in ascending order.
    let archs = ["75", "80", "86", "89", "90"];
    assert_eq!(lines.len(), 2 * archs.len(), "{args}");
    let mut line = lines.iter();
    for name in ["first", "second"] {
        for arch in archs {
            let l = line.next().unwrap();
            for want in [
                "--ptx",
                "--fmad=false",
                &format!("-arch=compute_{arch}"),
                &format!("kernels/{name}.cu"),
            ] {
                assert!(l.split(' ').any(|a| a == want), "{want} missing in `{l}`");
            }
            assert!(dir.join(format!("{name}.compute_{arch}.ptx")).exists());
        }
        // The list a crate includes names every variant, in order.
        let list = std::fs::read_to_string(dir.join(format!("{name}.ptx.rs"))).unwrap();
        let named: Vec<&str> = list
            .lines()
            .filter_map(|l| l.split("arch: \"").nth(1))
            .map(|rest| rest.split('"').next().unwrap())
            .collect();
        assert_eq!(named, archs, "{list}");
        assert!(list.contains(&format!("{name}.compute_90.ptx")), "{list}");
    }

    // DSNN_PTX_ARCHS replaces the list (CUDA_COMPUTE_CAP is not added).
    std::fs::remove_file(&log).unwrap();
    std::env::set_var("DSNN_PTX_ARCHS", "90a, 86");
    compile_ptx(&["third"]);
    let args = std::fs::read_to_string(&log).unwrap();
    let archs: Vec<&str> = args
        .split_whitespace()
        .filter_map(|a| a.strip_prefix("-arch=compute_"))
        .collect();
    assert_eq!(archs, ["86", "90a"]);

    // A failing nvcc, then a missing one: the build stops naming the cause.
    std::env::set_var("DSNN_PTX_ARCHS", "80");
    write(&nvcc, "#!/bin/sh\nexit 3\n");
    let e = std::panic::catch_unwind(|| compile_ptx(&["third"])).expect_err("nvcc failed");
    let msg = panic_text(e);
    assert!(
        msg.contains("failed on kernels/third.cu for compute_80"),
        "{msg}"
    );
    std::env::set_var("NVCC", dir.join("no-such-nvcc"));
    let e = std::panic::catch_unwind(|| compile_ptx(&["fourth"])).expect_err("no nvcc");
    let msg = panic_text(e);
    assert!(msg.contains("needs nvcc"), "{msg}");
    for bad in ["9.0!", "80,sm_x", ""] {
        std::env::set_var("DSNN_PTX_ARCHS", bad);
        let e = std::panic::catch_unwind(|| compile_ptx(&["fifth"])).expect_err("bad arch");
        let msg = panic_text(e);
        assert!(
            msg.contains("is not a compute capability") || msg.contains("is empty"),
            "{bad}: {msg}"
        );
    }
    std::env::remove_var("DSNN_PTX_ARCHS");
    std::env::set_var("CUDA_COMPUTE_CAP", "9.0!");
    let e = std::panic::catch_unwind(|| compile_ptx(&["sixth"])).expect_err("bad cap");
    let msg = panic_text(e);
    assert!(msg.contains("CUDA_COMPUTE_CAP"), "{msg}");
}

/// The message of a caught panic (a `String` or a `&str`).
fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dsnn-kernel-build-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
