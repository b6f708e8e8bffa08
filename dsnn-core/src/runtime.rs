//! Process-wide settings that make CPU training fast.
//!
//! Call [`tune_process`] at the start of `main`, before any tensor exists.
//! Library users who manage their own allocator or thread pools can skip it.

/// Applies dsnn's process settings, each only if the user has not chosen:
///
/// * glibc `malloc` keeps freed tensor buffers instead of returning them to
///   the kernel (`M_MMAP_THRESHOLD` at 32 MiB, glibc's largest allowed
///   value, and `M_TRIM_THRESHOLD` at 1 GiB); otherwise
///   every multi-megabyte activation is a fresh `mmap` whose page faults cost
///   about a quarter of a LeNet training step. Skipped when
///   `MALLOC_MMAP_THRESHOLD_` is set.
/// * candle's own element-wise thread pool is limited to the calling thread
///   (`CANDLE_NUM_THREADS=1`): dsnn's hot ops run on rayon, and candle's
///   spinning barrier competed with them for the cores. Skipped when
///   `CANDLE_NUM_THREADS` is set.
pub fn tune_process() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Single-threaded here: called first thing in `main`.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // glibc refuses mmap thresholds above 32 MiB on 64-bit (half its
        // per-arena heap size), and a refused call leaves the default of
        // 128 KiB in force while the trim setting below freezes it there.
        const MMAP_MAX: libc::c_int = 32 << 20;
        const ONE_GIB: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator tuning parameters.
        let (mmap_ok, trim_ok) = unsafe {
            (
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_MAX),
                libc::mallopt(libc::M_TRIM_THRESHOLD, ONE_GIB),
            )
        };
        if mmap_ok == 1 && trim_ok == 1 {
            log::debug!("malloc: mmap threshold 32 MiB, trim threshold 1 GiB");
        } else {
            log::warn!(
                "malloc: tuning refused (mmap {mmap_ok}, trim {trim_ok}); training may be slower"
            );
        }
    }
}
