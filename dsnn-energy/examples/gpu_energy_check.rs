//! Checks the NVML meter on a real GPU: lists the GPUs, measures the cost of
//! a start/stop pair, and meters an idle region and a memory-bound load
//! (repeated `cuMemsetD32` over 4 GiB through the CUDA driver API, loaded at
//! run time) with both methods at once: the cumulative energy counter and
//! integrated 20 ms power samples. Prints a table; exits non-zero if NVML is
//! unavailable or the two methods disagree by more than 10% under load.

use dsnn_energy::{EnergyMeter, NvmlMeter};
use std::ffi::{c_int, c_uint, c_void};
use std::time::{Duration, Instant};

type CuResult = c_int;

struct Cuda {
    _lib: libloading::Library,
    memset: unsafe extern "C" fn(u64, c_uint, usize) -> CuResult,
    sync: unsafe extern "C" fn() -> CuResult,
    buf: u64,
    words: usize,
}

impl Cuda {
    fn open(bytes: usize) -> Result<Cuda, String> {
        // SAFETY: documented CUDA driver API calls with valid out-pointers.
        unsafe {
            let lib = libloading::Library::new("libcuda.so.1").map_err(|e| e.to_string())?;
            macro_rules! f {
                ($n:literal, $t:ty) => {
                    *lib.get::<$t>(concat!($n, "\0").as_bytes())
                        .map_err(|e| e.to_string())?
                };
            }
            let init = f!("cuInit", unsafe extern "C" fn(c_uint) -> CuResult);
            let dev_get = f!(
                "cuDeviceGet",
                unsafe extern "C" fn(*mut c_int, c_int) -> CuResult
            );
            let retain = f!(
                "cuDevicePrimaryCtxRetain",
                unsafe extern "C" fn(*mut *mut c_void, c_int) -> CuResult
            );
            let set_current = f!(
                "cuCtxSetCurrent",
                unsafe extern "C" fn(*mut c_void) -> CuResult
            );
            let alloc = f!(
                "cuMemAlloc_v2",
                unsafe extern "C" fn(*mut u64, usize) -> CuResult
            );
            let memset = f!(
                "cuMemsetD32_v2",
                unsafe extern "C" fn(u64, c_uint, usize) -> CuResult
            );
            let sync = f!("cuCtxSynchronize", unsafe extern "C" fn() -> CuResult);
            let check = |what: &str, rc: CuResult| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(format!("{what} failed with CUDA error {rc}"))
                }
            };
            check("cuInit", init(0))?;
            let mut dev = 0;
            check("cuDeviceGet", dev_get(&mut dev, 0))?;
            let mut ctx = std::ptr::null_mut();
            check("cuDevicePrimaryCtxRetain", retain(&mut ctx, dev))?;
            check("cuCtxSetCurrent", set_current(ctx))?;
            let mut buf = 0u64;
            check("cuMemAlloc", alloc(&mut buf, bytes))?;
            Ok(Cuda {
                _lib: lib,
                memset,
                sync,
                buf,
                words: bytes / 4,
            })
        }
    }

    /// Keeps the GPU's memory system busy for `d`.
    fn load(&self, d: Duration) -> Result<u64, String> {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < d {
            for _ in 0..20 {
                // SAFETY: `buf` holds `words` 32-bit words.
                let rc = unsafe { (self.memset)(self.buf, n as c_uint, self.words) };
                if rc != 0 {
                    return Err(format!("cuMemsetD32 failed with {rc}"));
                }
                n += 1;
            }
            // SAFETY: no arguments.
            let rc = unsafe { (self.sync)() };
            if rc != 0 {
                return Err(format!("cuCtxSynchronize failed with {rc}"));
            }
        }
        Ok(n)
    }
}

fn region(
    label: &str,
    counter: &mut NvmlMeter,
    sampler: &mut NvmlMeter,
    work: impl FnOnce() -> String,
) -> f64 {
    counter.start().expect("start counter");
    sampler.start().expect("start sampler");
    let note = work();
    let s = sampler.stop().expect("stop sampler");
    let c = counter.stop().expect("stop counter");
    let diff = 100.0 * (s.joules() - c.joules()) / c.joules().max(1e-9);
    println!(
        "| {label} | {:.3} | {:.2} | {:.2} | {:.1} | {diff:+.1}% | {note} |",
        c.wall.as_secs_f64(),
        c.joules(),
        s.joules(),
        c.average_power_w(),
    );
    diff
}

fn main() {
    let mut counter = match NvmlMeter::open() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    for g in counter.gpus() {
        println!("GPU {}: {} ({:?})", g.index, g.name, g.method);
    }
    let mut sampler = NvmlMeter::open()
        .and_then(|m| {
            m.sample_interval(Duration::from_millis(20))
                .force_power_sampling()
        })
        .expect("second NVML meter");

    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        counter.start().unwrap();
        counter.stop().unwrap();
    }
    println!(
        "energy-counter start+stop: {:.1} us per pair ({n} pairs)",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
    let t = Instant::now();
    for _ in 0..20 {
        sampler.start().unwrap();
        sampler.stop().unwrap();
    }
    println!(
        "power-sampling start+stop: {:.1} us per pair (20 pairs, includes thread spawn)",
        t.elapsed().as_secs_f64() * 1e6 / 20.0
    );

    println!(
        "\n| region | wall s | counter J | sampled J | counter W | sampled - counter | note |"
    );
    println!("|---|---|---|---|---|---|---|");
    region("idle 2 s", &mut counter, &mut sampler, || {
        std::thread::sleep(Duration::from_secs(2));
        String::new()
    });
    let cuda = match Cuda::open(4 << 30) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("CUDA load unavailable: {e}");
            std::process::exit(3);
        }
    };
    cuda.load(Duration::from_millis(500)).expect("warm-up");
    let mut worst: f64 = 0.0;
    for secs in [3u64, 5] {
        let d = region(
            &format!("memset load {secs} s"),
            &mut counter,
            &mut sampler,
            || {
                let n = cuda.load(Duration::from_secs(secs)).expect("load");
                let gb = n as f64 * 4.0 * 1.073_741_824;
                format!("{n} memsets, {:.0} GB/s", gb / secs as f64)
            },
        );
        worst = worst.max(d.abs());
    }
    region("idle 2 s after load", &mut counter, &mut sampler, || {
        std::thread::sleep(Duration::from_secs(2));
        String::new()
    });
    if worst > 10.0 {
        eprintln!("counter and sampled energy disagree by {worst:.1}% under load");
        std::process::exit(1);
    }
}
