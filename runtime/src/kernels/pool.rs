//! Running a whole graph on rayon's pool, with the other workers kept awake.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a kept-awake worker spins without finding a job before it lets rayon put it to
/// sleep (longer than the serial stretches between the parallel kernels of a decode step).
const SPIN_IDLE: Duration = Duration::from_millis(2);
/// Idle spins between two looks at the clock.
const CLOCK_EVERY: u32 = 64;

/// Runs `f` on a thread of rayon's global pool (at once if the caller already is one), so the
/// parallel kernels it calls fork from inside the pool: each one then costs a push to the local
/// queue instead of waking a worker and blocking the caller. Meanwhile every other worker
/// spins, running the jobs the kernels push, instead of going to sleep between kernels and
/// having to be woken (a futex wake and a context switch, tens of microseconds in a VM, for
/// each of the ~100 parallel kernels of a decode step).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        let caller = rayon::current_thread_index();
        for _ in 1..rayon::current_num_threads() {
            let done = &done;
            scope.spawn(move |_| keep_awake(caller, done));
        }
        let result = f();
        done.store(true, Ordering::Release);
        result
    })
}

/// Runs the pool's jobs as they come until `done`, or until nothing came for [`SPIN_IDLE`].
/// Returns at once on the thread running the graph (it took this job while waiting for one of
/// its own: spinning there would stop the graph). A job it runs may be another caller's whole
/// run (concurrent `Session::run`s share the pool): this run's return then waits for that one.
fn keep_awake(caller: Option<usize>, done: &AtomicBool) {
    if rayon::current_thread_index() == caller {
        return;
    }
    let mut idle_since = Instant::now();
    let mut idle_spins = 0u32;
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_spins = 0;
            continue;
        }
        // The clock is read every CLOCK_EVERY idle spins only (a vDSO call is not free).
        idle_spins += 1;
        if idle_spins == 1 {
            idle_since = Instant::now();
        } else if idle_spins.is_multiple_of(CLOCK_EVERY) && idle_since.elapsed() > SPIN_IDLE {
            return;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    fn parallel_sum(n: u64) -> u64 {
        (0..n).into_par_iter().map(|i| i * i).sum()
    }

    #[test]
    fn concurrent_and_nested_runs_all_finish_with_their_results() {
        let want = |n: u64| (0..n).map(|i| i * i).sum::<u64>();
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..6u64)
                .map(|t| {
                    s.spawn(move || {
                        (0..50u64).map(|k| on_pool(|| parallel_sum(1000 + 97 * t + k) + on_pool(|| parallel_sum(10)))).sum::<u64>()
                    })
                })
                .collect();
            for (t, run) in runs.into_iter().enumerate() {
                let expected: u64 = (0..50u64).map(|k| want(1000 + 97 * t as u64 + k) + want(10)).sum();
                assert_eq!(run.join().unwrap(), expected, "run {t}");
            }
        });
    }
}
