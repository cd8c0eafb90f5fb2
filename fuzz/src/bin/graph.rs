//! Fuzz target: the graph builder, `Session::from_model` on a decoded `ModelProto` (external
//! data refused), then one run on small zero-filled inputs when it builds.

use rbe_runtime::onnx::{read_model_bytes, ExternalData};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(model) = read_model_bytes(bytes::Bytes::copy_from_slice(data)) {
            rbe_fuzz::build_and_run(&model, ExternalData::Refused);
        }
    });
}
