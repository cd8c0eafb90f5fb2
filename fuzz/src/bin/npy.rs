//! Fuzz target: the `.npy` reader, `rbe::npy::read_bytes`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = rbe::npy::read_bytes(data);
    });
}
