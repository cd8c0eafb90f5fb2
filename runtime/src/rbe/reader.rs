//! A bounds-checked little-endian byte reader: every read either succeeds or returns
//! `Error::Container`, never panics.

use crate::error::{Error, Result};

/// Reads from a byte slice front to back.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

fn truncated(what: &str) -> Error {
    Error::Container(format!("RBE tensor truncated while reading {what}"))
}

impl<'a> Reader<'a> {
    /// Starts at the beginning of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// Position from the start.
    pub(crate) fn position(&self) -> usize {
        self.at
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(truncated(what));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// One byte.
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A little-endian u16.
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// A little-endian u32.
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian f32.
    pub(crate) fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }

    /// An unsigned LEB128 varint of at most 5 bytes that fits a u32.
    pub(crate) fn varint(&mut self, what: &str) -> Result<u32> {
        let mut v: u64 = 0;
        for k in 0..5 {
            let b = self.u8(what)?;
            v |= ((b & 0x7f) as u64) << (7 * k);
            if b & 0x80 == 0 {
                return u32::try_from(v)
                    .map_err(|_| Error::Container(format!("varint too large in {what}")));
            }
        }
        Err(Error::Container(format!(
            "varint longer than 5 bytes in {what}"
        )))
    }
}

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
