//! Recycled f32 buffers: the graph runner hands back the buffers of intermediate values it
//! frees, and the hot ops (compressed and dense linears, attention) take their outputs from
//! here, so a step reuses the previous step's buffers instead of allocating afresh.
//!
//! One pool per thread (a graph runs on one thread, its kernels' inner parallel work writes
//! into buffers taken there), bounded in count and bytes; a buffer is reused only for a
//! request between half and all of its capacity.

use std::cell::RefCell;

/// At most this many buffers are kept per thread.
const MAX_BUFFERS: usize = 64;
/// At most this many bytes are kept per thread.
const MAX_BYTES: usize = 16 << 20;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` values with unspecified contents (a recycled buffer keeps its old
/// values), for outputs a kernel writes in full.
pub fn take(len: usize) -> Vec<f32> {
    let recycled = FREE.with(|free| {
        let mut free = free.borrow_mut();
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len && v.capacity() / 2 <= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        Some(free.swap_remove(best))
    });
    match recycled {
        Some(mut v) => {
            v.truncate(len);
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// Gives a buffer back for reuse (dropped when the pool is full or it is empty).
pub fn recycle(v: Vec<f32>) {
    if v.capacity() == 0 {
        return;
    }
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        let held: usize = free.iter().map(|b| b.capacity() * 4).sum();
        if free.len() < MAX_BUFFERS && held + v.capacity() * 4 <= MAX_BYTES {
            free.push(v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_buffer_is_reused_when_it_fits() {
        let mut v = take(1000);
        v.iter_mut().for_each(|x| *x = 7.0);
        let ptr = v.as_ptr();
        recycle(v);
        let again = take(900);
        assert_eq!(again.as_ptr(), ptr, "same allocation reused");
        assert_eq!(again.len(), 900);
        recycle(again);
        // Too small, or far too large, for the free buffer: a fresh allocation.
        let big = take(2000);
        assert_ne!(big.as_ptr(), ptr);
        let small = take(10);
        assert_ne!(small.as_ptr(), ptr);
    }

    #[test]
    fn the_pool_is_bounded() {
        for _ in 0..MAX_BUFFERS + 10 {
            recycle(vec![0.0; 16]);
        }
        recycle(vec![0.0; MAX_BYTES / 4 + 1]);
        FREE.with(|free| {
            let free = free.borrow();
            assert!(free.len() <= MAX_BUFFERS);
            assert!(free.iter().map(|b| b.capacity() * 4).sum::<usize>() <= MAX_BYTES);
        });
    }
}
