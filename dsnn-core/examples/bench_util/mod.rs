//! Timing helpers shared by dsnn-core's benchmark examples (a module, not an
//! example: Cargo only builds `examples/*.rs` and `examples/*/main.rs`).
// Each example uses only some of them.
#![allow(dead_code)]

/// The median of `v` (the upper one for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

/// CPU time of the whole process (all threads) in milliseconds.
pub fn process_cpu_ms() -> f64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6;
        }
    }
    f64::NAN
}

/// The value after the command-line flag `name` (`--batch 32`), if given.
pub fn flag_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}
