//! The C allocator's settings for the command-line tools.
//!
//! glibc hands blocks over its mmap threshold (128 KiB at first, raised as such blocks are
//! freed) straight to and from the kernel, and trims the heap's free top. A session that
//! allocates the same tensors at every run (a KV cache concatenated, an activation, the
//! logits) then pays a page fault and a zeroed page for every 4 KiB of them, every time.
//! [`keep_freed_memory`] serves blocks up to 4 MiB from the heap and keeps up to 32 MiB of
//! freed heap, as onnxruntime's arena keeps its buffers (BENCHMARKS.md: a GPT-2 small q4 step
//! 11.2 -> 8.1 ms; the fp32 prompt's peak RSS 810 -> 838 MB). Once the model is loaded,
//! [`keep_run_buffers`] raises the limit to glibc's largest (32 MiB), so that a prompt's
//! logits (25.7 MB for GPT-2 at 128 tokens) are reused too: raised before loading, the
//! loader's freed initializers would stay in the heap (peak RSS 837 -> 1001 MB).

/// Applies the settings above (glibc on Linux; elsewhere nothing to do).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

/// Serves blocks up to 32 MiB from the heap from now on (glibc on Linux; elsewhere nothing to
/// do). Call it once the model is loaded, while no other thread allocates.
pub fn keep_run_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; the caller runs it between the load
    // and the first run, when the kernel pool's threads are idle.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
