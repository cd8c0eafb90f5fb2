//! The reader against hand-built GGUF images: good ones parse, every malformed one is a typed
//! error (never a panic, never an allocation of what a header claims).

use super::parse;
use crate::gguf::error::GgufError;
use crate::gguf::value::Value;

/// A little-endian GGUF image under construction.
#[derive(Default)]
struct Image(Vec<u8>);

impl Image {
    fn u32(mut self, v: u32) -> Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn string(self, s: &str) -> Self {
        let mut me = self.u64(s.len() as u64);
        me.0.extend(s.as_bytes());
        me
    }
    fn header(tensors: u64, keys: u64) -> Self {
        Image(b"GGUF".to_vec()).u32(3).u64(tensors).u64(keys)
    }
    /// A tensor info: name, dims (innermost first), type, offset.
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut me = self.string(name).u32(dims.len() as u32);
        for &d in dims {
            me = me.u64(d);
        }
        me.u32(ty).u64(offset)
    }
    /// Pads to 32 bytes, then appends `data`.
    fn data(mut self, data: &[u8]) -> Self {
        while !self.0.len().is_multiple_of(32) {
            self.0.push(0);
        }
        self.0.extend(data);
        self
    }
}

/// One key (a u32 and a string array) and one F32 tensor of 4 values.
fn good() -> Vec<u8> {
    let floats: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|f| f.to_le_bytes()).collect();
    Image::header(1, 2)
        .string("llama.block_count").u32(4).u32(7)
        .string("tokenizer.ggml.tokens").u32(9).u32(8).u64(2).string("a").string("bc")
        .tensor("t", &[2, 2], 0, 0)
        .data(&floats)
        .0
}

#[test]
fn parses_metadata_and_tensors() {
    let (version, meta, tensors) = parse(&good()).unwrap();
    assert_eq!(version, 3);
    assert_eq!(meta.uint("llama.block_count").unwrap(), Some(7));
    assert_eq!(meta.array("tokenizer.ggml.tokens").unwrap().unwrap(), [Value::Str("a".into()), Value::Str("bc".into())]);
    assert_eq!(tensors[0].shape(), [2, 2]);
    assert_eq!(tensors[0].size, 16);
    assert_eq!(tensors[0].offset % 32, 0);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = good();
    for len in 0..bytes.len() {
        match parse(&bytes[..len]) {
            Err(GgufError::Truncated { .. }) | Err(GgufError::Limit { .. }) => {}
            other => panic!("prefix of {len} bytes: {:?}", other.map(|_| ())),
        }
    }
}

fn error(bytes: &[u8]) -> String {
    match parse(bytes) {
        Ok(_) => panic!("parsed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn wrong_magic_and_version() {
    let mut bytes = good();
    bytes[0] = b'X';
    assert!(error(&bytes).contains("not a GGUF"));
    let mut bytes = good();
    bytes[4] = 1;
    assert!(error(&bytes).contains("version 1"));
    let mut bytes = good();
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(error(&bytes).contains("big-endian"));
}

#[test]
fn absurd_counts_and_lengths() {
    // More tensors than the file could describe.
    assert!(error(&Image::header(1 << 40, 0).0).contains("tensor count"));
    assert!(error(&Image::header(0, u64::MAX).0).contains("metadata key count"));
    // A key whose length runs past the end of the file.
    assert!(error(&Image::header(0, 1).u64(1 << 50).u64(0).0).contains("metadata key length"));
    // An array claiming 2^40 u64 items.
    let e = error(&Image::header(0, 1).string("k").u32(9).u32(10).u64(1 << 40).0);
    assert!(e.contains("array length"), "{e}");
    // Five dimensions, and dimensions whose product overflows.
    assert!(error(&Image::header(1, 0).tensor("t", &[1, 1, 1, 1, 1], 0, 0).data(&[0; 4]).0).contains("dimension count"));
    assert!(error(&Image::header(1, 0).tensor("t", &[1 << 40, 1 << 40], 0, 0).0).contains("element count"));
}

#[test]
fn unknown_types_are_named() {
    let e = error(&Image::header(1, 0).tensor("w", &[32], 11, 0).data(&[0; 110]).0);
    assert!(e.contains("'w'") && e.contains("Q3_K") && e.contains("not supported"), "{e}");
    assert!(error(&Image::header(1, 0).tensor("w", &[32], 99, 0).0).contains("99"));
    assert!(error(&Image::header(0, 1).string("k").u32(13).0).contains("unknown value type 13"));
}

#[test]
fn data_must_lie_in_the_file_and_be_aligned() {
    let floats = [0u8; 16];
    assert!(matches!(
        parse(&Image::header(1, 0).tensor("t", &[4], 0, 32).data(&floats).0),
        Err(GgufError::Truncated { .. })
    ));
    assert!(error(&Image::header(1, 0).tensor("t", &[4], 0, 4).data(&[0; 32]).0).contains("multiple of 32"));
    // 33 values do not fill Q8_0 blocks of 32.
    assert!(error(&Image::header(1, 0).tensor("t", &[33], 8, 0).data(&[0; 68]).0).contains("whole"));
}

#[test]
fn duplicate_keys_and_bad_strings() {
    let dup = Image::header(0, 2).string("k").u32(4).u32(1).string("k").u32(4).u32(2).0;
    assert!(error(&dup).contains("twice"));
    let mut bad = Image::header(0, 1).u64(2).0;
    bad.extend([0xff, 0xfe]);
    let bad = Image(bad).u32(4).u32(0).0;
    assert!(error(&bad).contains("UTF-8"));
}
