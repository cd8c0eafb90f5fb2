//! Writing `.rbeonnx` containers (the layout is defined and read by `rbe_runtime::container`).

use rayon::prelude::*;
use rbe_runtime::container::{Header, SectionEntry, SectionKind, SECTION_LOCATION_PREFIX};
use rbe_runtime::onnx::proto::tensor_proto::DataLocation;
use rbe_runtime::onnx::proto::{ModelProto, StringStringEntryProto, TensorProto};

use prost::Message;

/// Tensors smaller than this stay embedded in the graph.
const INLINE_LIMIT: usize = 256;
/// A data section is closed once it holds this many bytes (sections unpack in parallel).
const SECTION_TARGET: usize = 8 << 20;
/// Tensor data inside a section starts on this alignment.
const ALIGN: usize = 64;

/// Collects tensor bytes into data sections, then writes the container.
pub struct ContainerBuilder {
    sections: Vec<Vec<u8>>,
    level: i32,
}

impl ContainerBuilder {
    /// A builder that packs with zstd at `level` (3 is a good default; 19 packs harder).
    pub fn new(level: i32) -> Self {
        Self { sections: vec![Vec::new()], level }
    }

    /// Moves the `raw_data` of `t` into a data section and points `t` at it through ONNX
    /// external-data fields. Small tensors and tensors without raw data stay embedded.
    pub fn externalize(&mut self, t: &mut TensorProto) {
        if t.raw_data.len() < INLINE_LIMIT {
            return;
        }
        if self.sections.last().is_none_or(|s| s.len() >= SECTION_TARGET) {
            self.sections.push(Vec::new());
        }
        let index = self.sections.len(); // section 0 of the file is the graph
        let Some(section) = self.sections.last_mut() else { return };
        section.resize(section.len().next_multiple_of(ALIGN), 0);
        let offset = section.len();
        section.extend_from_slice(&t.raw_data);
        let entry = |k: &str, v: String| StringStringEntryProto { key: k.into(), value: v };
        t.external_data = vec![
            entry("location", format!("{SECTION_LOCATION_PREFIX}{index}")),
            entry("offset", offset.to_string()),
            entry("length", t.raw_data.len().to_string()),
        ];
        t.data_location = DataLocation::External as i32;
        t.raw_data = Default::default();
    }

    /// Packs the graph and the data sections and returns the container's bytes.
    pub fn finish(self, model: &ModelProto) -> Result<Vec<u8>, String> {
        let mut raws = vec![model.encode_to_vec()];
        raws.extend(self.sections.into_iter().filter(|s| !s.is_empty()));
        let level = self.level;
        let packed: Vec<Vec<u8>> = raws
            .par_iter()
            .map(|raw| zstd::bulk::compress(raw, level).map_err(|e| format!("zstd: {e}")))
            .collect::<Result<_, _>>()?;
        let mut offset = Header::encoded_len(raws.len()) as u64;
        let sections = raws
            .iter()
            .zip(&packed)
            .enumerate()
            .map(|(i, (raw, stored))| {
                let entry = SectionEntry {
                    kind: if i == 0 { SectionKind::Graph } else { SectionKind::Data },
                    offset,
                    stored_len: stored.len() as u64,
                    raw_len: raw.len() as u64,
                    stored_crc: crc32fast::hash(stored),
                    raw_crc: crc32fast::hash(raw),
                };
                offset += stored.len() as u64;
                entry
            })
            .collect();
        let mut out = Header { sections }.encode();
        for stored in packed {
            out.extend_from_slice(&stored);
        }
        Ok(out)
    }
}

/// Reads an `.rbeonnx` and returns its model with every tensor's data inlined as `raw_data`,
/// so that it can be saved as a plain `.onnx` any ONNX tool opens.
pub fn unpack_to_onnx(path: &std::path::Path) -> Result<ModelProto, String> {
    let container = rbe_runtime::container::read_container(path).map_err(|e| e.to_string())?;
    let mut model = container.model;
    let sections = rbe_runtime::onnx::ExternalData::Sections(&container.sections);
    if let Some(graph) = model.graph.as_mut() {
        for t in graph.initializer.iter_mut() {
            let value = rbe_runtime::onnx::tensor_from_proto(t, sections).map_err(|e| e.to_string())?;
            *t = rbe_runtime::onnx::tensor_to_proto(&t.name, &value);
        }
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbe_runtime::container::unpack;
    use rbe_runtime::onnx::proto::GraphProto;
    use rbe_runtime::onnx::{tensor_from_proto, tensor_to_proto, ExternalData};
    use rbe_runtime::Tensor;

    fn build() -> (Vec<u8>, Tensor) {
        let values: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let tensor = Tensor::from_vec(&[10, 100], values).unwrap();
        let mut builder = ContainerBuilder::new(3);
        let mut proto = tensor_to_proto("w", &tensor);
        builder.externalize(&mut proto);
        let graph = GraphProto { initializer: vec![proto], ..Default::default() };
        let model = ModelProto { graph: Some(graph), ..Default::default() };
        (builder.finish(&model).unwrap(), tensor)
    }

    #[test]
    fn round_trip_restores_tensors() {
        let (bytes, tensor) = build();
        let c = unpack(&bytes).unwrap();
        let init = &c.model.graph.as_ref().unwrap().initializer[0];
        assert!(init.raw_data.is_empty(), "data must live in a section");
        let back = tensor_from_proto(init, ExternalData::Sections(&c.sections)).unwrap();
        assert_eq!(back, tensor);
    }

    #[test]
    fn every_flipped_byte_and_truncation_is_an_error() {
        let (bytes, _) = build();
        for pos in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x5a;
            assert!(unpack(&bad).is_err(), "flip at {pos} went unnoticed");
        }
        for len in 0..bytes.len() {
            assert!(unpack(&bytes[..len]).is_err(), "truncation to {len} went unnoticed");
        }
    }
}
