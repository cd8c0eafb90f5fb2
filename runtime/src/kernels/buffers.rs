//! Recycled f32 buffers: the graph runner hands back the buffers of intermediate values it
//! frees, and the hot ops (compressed and dense linears, attention) take their outputs from
//! here, so a step reuses the previous step's buffers instead of allocating afresh.
//!
//! One pool per thread (a graph runs on one thread, its kernels' inner parallel work writes
//! into buffers taken there), bounded in count and bytes; a buffer is reused only for a
//! request between half and all of its capacity.

use std::cell::RefCell;
use std::mem::{ManuallyDrop, MaybeUninit};

/// At most this many buffers are kept per thread.
const MAX_BUFFERS: usize = 64;
/// At most this many bytes are kept per thread.
const MAX_BYTES: usize = 16 << 20;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A recycled buffer of capacity between `len` and twice that, if the pool has one.
fn recycled(len: usize) -> Option<Vec<f32>> {
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len && v.capacity() / 2 <= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        Some(free.swap_remove(best))
    })
}

/// A buffer of `len` values with unspecified contents (a recycled buffer keeps its old
/// values), for outputs a kernel writes in full.
pub fn take(len: usize) -> Vec<f32> {
    match recycled(len) {
        Some(mut v) => {
            v.truncate(len);
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// `len` unwritten slots (a recycled buffer, or fresh memory that is not zeroed first), for
/// an output a kernel writes in full ([`super::output::Output`]); [`into_written`] then
/// gives the values.
pub fn take_unwritten(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut slots = match recycled(len) {
        Some(v) => {
            let mut v = ManuallyDrop::new(v);
            // SAFETY: the allocation of a Vec<f32> as a Vec of the same-layout MaybeUninit<f32>,
            // owned by the new Vec only.
            unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<MaybeUninit<f32>>(), v.len(), v.capacity()) }
        }
        None => Vec::with_capacity(len),
    };
    slots.truncate(len);
    slots.resize(len, MaybeUninit::uninit());
    slots
}

/// The values of `slots` once every one is written.
///
/// # Safety
/// Every slot was written after [`take_unwritten`] handed it out.
pub unsafe fn into_written(slots: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut slots = ManuallyDrop::new(slots);
    // SAFETY: same layout and allocation; every value initialized (the caller's promise).
    unsafe { Vec::from_raw_parts(slots.as_mut_ptr().cast::<f32>(), slots.len(), slots.capacity()) }
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
    fn unwritten_slots_come_from_the_pool_and_give_their_values() {
        let v = vec![3.0f32; 1000];
        let ptr = v.as_ptr();
        recycle(v);
        let mut slots = take_unwritten(700);
        assert_eq!(slots.as_ptr().cast::<f32>(), ptr, "the recycled buffer");
        assert_eq!(slots.len(), 700);
        slots.iter_mut().enumerate().for_each(|(i, s)| {
            s.write(i as f32);
        });
        // SAFETY: every slot was just written.
        let values = unsafe { into_written(slots) };
        assert!(values.iter().enumerate().all(|(i, &x)| x == i as f32));
        let fresh = take_unwritten(5000);
        assert_eq!(fresh.len(), 5000);
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
