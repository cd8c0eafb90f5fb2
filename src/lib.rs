//! `rbe`: the toolkit around `rbe-runtime`: the codec's encoder, graph rewriting, the
//! `.rbeonnx` writer, snapshot-diff, and the command-line tools.

pub mod allocate;
pub mod atomic;
pub mod bench;
pub mod calibrate;
pub mod chat;
pub mod codec;
pub mod container;
pub mod convert;
pub mod diff;
pub mod emit;
pub mod feeds;
pub mod generate;
pub mod gguf;
pub mod logits;
pub mod malloc;
pub mod model_dir;
pub mod npy;
