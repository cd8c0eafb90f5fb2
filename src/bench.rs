//! Timing helpers for `--bench`: a warm-up, then the median and minimum of N runs.

use std::time::Instant;

/// Runs `f` once to warm up, then `n` (at least 1) times; returns (median, min) in ms.
pub fn time_runs<E>(n: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<(f64, f64), E> {
    f()?;
    let mut times = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}
