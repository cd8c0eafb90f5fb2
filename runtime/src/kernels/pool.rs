//! Running a whole graph on rayon's pool.

/// Runs `f` on a thread of rayon's global pool (at once if the caller already is one), so the
/// parallel kernels it calls fork from inside the pool: each one then costs a push to the local
/// queue instead of waking a worker and blocking the caller.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
}
