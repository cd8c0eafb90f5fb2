//! Fuzz target: the `.rbeonnx` reader, `rbe_runtime::container::unpack`, then a session built
//! from what it unpacked (as `Session::load` does for a container), run once on small inputs.
//! Each input is tried as it is and with its checksums made right, so that mutations get past
//! the CRCs into the section table, zstd and the graph.

use rbe_runtime::container::unpack;
use rbe_runtime::onnx::ExternalData;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = unpack(data);
        if let Some(fixed) = rbe_fuzz::with_fixed_checksums(data) {
            if let Ok(c) = unpack(&fixed) {
                rbe_fuzz::build_and_run(&c.model, ExternalData::Sections(&c.sections));
            }
        }
    });
}
