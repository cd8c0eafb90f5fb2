//! Fuzz target: the `.onnx` decoder, `rbe_runtime::onnx::read_model_bytes`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = rbe_runtime::onnx::read_model_bytes(bytes::Bytes::copy_from_slice(data));
    });
}
