//! Writing `.rbeonnx` containers (the layout is defined and read by `rbe_runtime::container`).

use rayon::prelude::*;
use rbe_runtime::container::{Header, Packing, SectionEntry, SectionKind, SECTION_LOCATION_PREFIX, STORED_ALIGN};
use rbe_runtime::onnx::proto::tensor_proto::DataLocation;
use rbe_runtime::onnx::proto::{ModelProto, StringStringEntryProto, TensorProto};

use prost::Message;

/// Tensors smaller than this stay embedded in the graph.
const INLINE_LIMIT: usize = 256;
/// A data section is closed once it holds this many bytes (sections unpack in parallel).
const SECTION_TARGET: usize = 8 << 20;
/// Tensor data inside a section starts on this alignment.
const ALIGN: usize = 64;
/// Data sections that zstd shrinks by less than this fraction are stored as they are.
pub const STORE_BELOW_SAVING: f64 = 0.10;

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

    /// Packs the graph and the data sections and returns the container's bytes. A data
    /// section that zstd would shrink by less than [`STORE_BELOW_SAVING`] (encoded weights
    /// are dense codes) is stored as it is, page-aligned, for readers to use in place.
    pub fn finish(self, model: &ModelProto) -> Result<Vec<u8>, String> {
        let mut raws = vec![model.encode_to_vec()];
        raws.extend(self.sections.into_iter().filter(|s| !s.is_empty()));
        let level = self.level;
        let packed: Vec<Option<Vec<u8>>> = raws
            .par_iter()
            .enumerate()
            .map(|(i, raw)| {
                let packed = zstd::bulk::compress(raw, level).map_err(|e| format!("zstd: {e}"))?;
                let saving = 1.0 - packed.len() as f64 / raw.len().max(1) as f64;
                Ok((i == 0 || saving >= STORE_BELOW_SAVING).then_some(packed))
            })
            .collect::<Result<_, String>>()?;
        let mut offset = Header::encoded_len(raws.len()) as u64;
        let mut sections = Vec::with_capacity(raws.len());
        for (i, (raw, packed)) in raws.iter().zip(&packed).enumerate() {
            let (stored, packing) = match packed {
                Some(p) => (p, Packing::Zstd),
                None => {
                    offset = offset.next_multiple_of(STORED_ALIGN);
                    (raw, Packing::Stored)
                }
            };
            sections.push(SectionEntry {
                kind: if i == 0 { SectionKind::Graph } else { SectionKind::Data },
                packing,
                offset,
                stored_len: stored.len() as u64,
                raw_len: raw.len() as u64,
                stored_crc: crc32fast::hash(stored),
                raw_crc: crc32fast::hash(raw),
            });
            offset += stored.len() as u64;
        }
        let mut out = Header { sections: sections.clone() }.encode();
        for ((raw, packed), entry) in raws.iter().zip(&packed).zip(&sections) {
            out.resize(entry.offset as usize, 0);
            out.extend_from_slice(packed.as_deref().unwrap_or(raw));
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

    /// A container of one tensor: 1000 repeating f32 values zstd packs well, or 4000 noisy bytes
    /// it cannot (stored as they are, like encoded weights).
    fn build(noisy: bool) -> (Vec<u8>, Tensor) {
        build_noisy_len(noisy, 4000)
    }

    /// [`build`] with `len` noisy bytes.
    fn build_noisy_len(noisy: bool, len: usize) -> (Vec<u8>, Tensor) {
        let tensor = if noisy {
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            };
            let bytes = (0..len).map(|_| next()).collect();
            Tensor::from_vec(&[len], bytes).unwrap()
        } else {
            Tensor::from_vec(&[10, 100], (0..1000).map(|i| (i % 16) as f32 * 0.25).collect()).unwrap()
        };
        let mut builder = ContainerBuilder::new(3);
        let mut proto = tensor_to_proto("w", &tensor);
        builder.externalize(&mut proto);
        let graph = GraphProto { initializer: vec![proto], ..Default::default() };
        let model = ModelProto { graph: Some(graph), ..Default::default() };
        (builder.finish(&model).unwrap(), tensor)
    }

    fn packing(bytes: &[u8]) -> Vec<Packing> {
        Header::parse(bytes).unwrap().sections.iter().map(|s| s.packing).collect()
    }

    #[test]
    fn round_trip_restores_tensors() {
        for noisy in [false, true] {
            let (bytes, tensor) = build(noisy);
            let data = if noisy { Packing::Stored } else { Packing::Zstd };
            assert_eq!(packing(&bytes), [Packing::Zstd, data]);
            let c = unpack(&bytes).unwrap();
            let init = &c.model.graph.as_ref().unwrap().initializer[0];
            assert!(init.raw_data.is_empty(), "data must live in a section");
            let back = tensor_from_proto(init, ExternalData::Sections(&c.sections)).unwrap();
            assert_eq!(back, tensor);
        }
    }

    #[test]
    fn stored_sections_are_page_aligned_and_read_in_place_from_a_file() {
        let (bytes, tensor) = build(true);
        let header = Header::parse(&bytes).unwrap();
        assert_eq!(header.sections[1].offset % rbe_runtime::container::STORED_ALIGN, 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.rbeonnx");
        std::fs::write(&path, &bytes).unwrap();
        let c = rbe_runtime::container::read_container(&path).unwrap();
        assert_eq!(c.sections[1].as_ptr() as usize % rbe_runtime::container::STORED_ALIGN as usize, 0, "a slice of the page-aligned mapping");
        let init = &c.model.graph.as_ref().unwrap().initializer[0];
        assert_eq!(tensor_from_proto(init, ExternalData::Sections(&c.sections)).unwrap(), tensor);
    }

    #[test]
    fn large_stored_sections_read_from_a_file_are_copied_out_whole() {
        // 3 MiB: past the size from which a stored section leaves the file mapping for a copy.
        let (bytes, tensor) = build_noisy_len(true, 3 << 20);
        assert_eq!(packing(&bytes), [Packing::Zstd, Packing::Stored]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.rbeonnx");
        std::fs::write(&path, &bytes).unwrap();
        let c = rbe_runtime::container::read_container(&path).unwrap();
        let init = &c.model.graph.as_ref().unwrap().initializer[0];
        assert_eq!(tensor_from_proto(init, ExternalData::Sections(&c.sections)).unwrap(), tensor);
    }

    #[test]
    fn version_1_containers_still_open() {
        let (mut bytes, tensor) = build(false);
        let header_len = Header::encoded_len(2);
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..header_len - 4]);
        bytes[header_len - 4..header_len].copy_from_slice(&crc.to_le_bytes());
        let c = unpack(&bytes).unwrap();
        let init = &c.model.graph.as_ref().unwrap().initializer[0];
        assert_eq!(tensor_from_proto(init, ExternalData::Sections(&c.sections)).unwrap(), tensor);
    }

    #[test]
    fn every_flipped_byte_and_truncation_is_an_error() {
        for noisy in [false, true] {
            let (bytes, _) = build(noisy);
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
}
