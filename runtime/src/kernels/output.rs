//! Outputs that a kernel writes in full before anything reads them, so that a fresh buffer
//! need not be zeroed first: a prompt's logits (25.7 MB for GPT-2 at 128 tokens) would
//! otherwise cost a serial pass over memory before the product even starts.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// `len` f32 slots for a kernel to write in full: unwritten memory (from
/// [`super::buffers::take_unwritten`]) or a slice whose old values it overwrites. Only whole
/// values go in, through [`as_mut_ptr`](Self::as_mut_ptr), so nothing unwritten can be read
/// through a slice it was made from.
pub struct Output<'a> {
    ptr: *mut f32,
    len: usize,
    _slots: PhantomData<&'a mut [MaybeUninit<f32>]>,
}

impl<'a> Output<'a> {
    /// Number of slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first slot, for kernels that write values through raw pointers (inside `len`).
    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        self.ptr
    }

    /// Every slot set to `value`, as plain values (for the paths that accumulate into their
    /// output, or are too small for a skipped fill to matter).
    pub fn filled(self, value: f32) -> &'a mut [f32] {
        for i in 0..self.len {
            // SAFETY: `i < len` slots of `'a`-borrowed memory.
            unsafe { self.ptr.add(i).write(value) };
        }
        // SAFETY: every slot was just written.
        unsafe { self.assume_written() }
    }

    /// The values, once the caller's kernel has written every slot.
    ///
    /// # Safety
    /// Every slot was written since the memory was handed out unwritten.
    pub unsafe fn assume_written(self) -> &'a mut [f32] {
        // SAFETY: `len` slots borrowed for `'a`, all initialized (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// The slots as `MaybeUninit` values, for kernels that write through slices or views.
    ///
    /// # Safety
    /// The caller writes only initialized values (`MaybeUninit::new`): the slots may belong
    /// to a plain `&mut [f32]`.
    pub unsafe fn into_slots(self) -> &'a mut [MaybeUninit<f32>] {
        // SAFETY: `len` slots borrowed for `'a`; the caller keeps them initialized if they were.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast(), self.len) }
    }
}

impl<'a> From<&'a mut [f32]> for Output<'a> {
    fn from(values: &'a mut [f32]) -> Self {
        Output { ptr: values.as_mut_ptr(), len: values.len(), _slots: PhantomData }
    }
}

impl<'a> From<&'a mut [MaybeUninit<f32>]> for Output<'a> {
    fn from(slots: &'a mut [MaybeUninit<f32>]) -> Self {
        Output { ptr: slots.as_mut_ptr().cast(), len: slots.len(), _slots: PhantomData }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_slots_read_back_and_written_ones_keep_their_values() {
        let mut fresh = crate::kernels::buffers::take_unwritten(5);
        assert_eq!(Output::from(&mut fresh[..]).filled(2.5), &[2.5; 5]);
        let mut values = [1.0f32, 2.0, 3.0];
        let mut out = Output::from(&mut values[..]);
        // SAFETY: slot 1 of 3.
        unsafe { out.as_mut_ptr().add(1).write(7.0) };
        // SAFETY: the slots came from initialized values.
        assert_eq!(unsafe { out.assume_written() }, &[1.0, 7.0, 3.0]);
    }
}
