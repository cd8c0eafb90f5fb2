//! `rbe`: the toolkit around `rbe-runtime`: the codec's encoder, graph rewriting, the
//! `.rbeonnx` writer, snapshot-diff, and the command-line tools.

pub mod codec;
