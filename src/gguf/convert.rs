//! `rbe-convert model.gguf`: import, then either the plain ONNX graph (f32 weights, exactly
//! the dequantized GGUF) or the encoded `.rbeonnx`, plus the tokenizer.json and tokenizer_config.json texts.

use std::path::Path;

use rbe_runtime::onnx::ExternalData;

use crate::convert::{ContainerJob, ConvertReport, Source};

/// What a GGUF conversion produces (nothing is written here).
pub struct GgufConversion {
    /// The output file's bytes.
    pub bytes: Vec<u8>,
    /// The encoder's report (`None` for the plain ONNX output), rows tagged with source types.
    pub report: Option<ConvertReport>,
    /// The imported tensors and their GGUF types, as a printable table.
    pub sources: String,
    /// The tokenizer.json text, or why there is none.
    pub tokenizer: Result<Option<String>, String>,
    /// The tokenizer_config.json text (chat template, BOS/EOS tokens), or why there is none.
    pub tokenizer_config: Result<Option<String>, String>,
}

/// How to write the converted model.
pub enum GgufTarget<'a> {
    /// A plain `.onnx` with f32 initializers (lossless).
    Onnx,
    /// An `.rbeonnx` encoded as the job says.
    Container(&'a ContainerJob<'a>),
}

/// Imports `input` and converts it for `target`.
pub fn convert_gguf(input: &Path, target: GgufTarget) -> Result<GgufConversion, String> {
    let (file, graph) = super::import(input).map_err(|e| e.to_string())?;
    let tokenizer = super::tokenizer::tokenizer_json(&file.metadata).map_err(|e| e.to_string());
    let tokenizer_config = super::tokenizer::tokenizer_config_json(&file.metadata).map_err(|e| e.to_string());
    let sources = super::sources_table(&graph.sources);
    let input_bytes = std::fs::metadata(input).map_or(0, |m| m.len());
    let (bytes, report) = match target {
        GgufTarget::Onnx => (prost::Message::encode_to_vec(&graph.model), None),
        GgufTarget::Container(job) => {
            let (bytes, mut report) =
                crate::convert::convert_to_container(graph.model, Source { data: ExternalData::Refused, pages: None }, input_bytes, job)?;
            for row in &mut report.tensors {
                row.source_type = row
                    .name
                    .split(" = ")
                    .find_map(|n| graph.sources.iter().find(|s| s.name == n))
                    .map(|s| s.source_type.to_string());
            }
            (bytes, Some(report))
        }
    };
    Ok(GgufConversion { bytes, report, sources, tokenizer, tokenizer_config })
}
