//! Every weight encoded at every width the allocation may choose, with what each encoding
//! costs (bytes) and how much it disturbs the layer (its distortion).

use std::collections::HashMap;

use rayon::prelude::*;

use crate::codec::{encode_calibrated, encode_with_reconstruction, EncodeParams, Encoded, Hessian};
use crate::convert::{Initializers, Weight};

use super::Format;

/// One encoding of a weight.
pub struct Encoding {
    /// Its code width and group length.
    pub format: Format,
    /// The encoded tensor.
    pub encoded: Encoded,
    /// The layer's output error energy on the calibration inputs relative to its output's own
    /// energy (for a weight without statistics, such as an embedding: the relative squared
    /// error of the weights).
    pub distortion: f64,
}

/// The encodings a weight can be stored as, narrowest first.
pub struct Choices {
    /// The first initializer the weight stands for.
    pub name: String,
    /// The name with every digit run replaced by `#`: weights of the same role in every layer
    /// (`blk.#.attn_q.weight`) share a kind, and a measured sensitivity.
    pub kind: String,
    /// Number of weights.
    pub weights: usize,
    /// One per format, in the order of the formats asked for.
    pub options: Vec<Encoding>,
}

/// A weight's role, from its name: digit runs replaced by `#`.
pub fn kind_of(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('#') {
            out.push('#');
        }
    }
    out
}

/// Encodes each weight (with its first source name and the statistics that steer it, if any)
/// in every format of `formats` (the other knobs from `params`, no per-tensor budget), in
/// parallel over the weights; each weight's values are read from `store` when its turn comes
/// and dropped once its encodings are made.
/// `tick` is called once per weight.
pub fn encode_all(
    weights: Vec<(Weight, Option<&Hessian>)>,
    formats: &[Format],
    params: &EncodeParams,
    store: &Initializers,
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<Choices>, String> {
    weights
        .into_par_iter()
        .map(|(w, hessian)| {
            let data = store.weight_values(&w)?;
            let options = formats
                .iter()
                .map(|&format| encode_one(&w, &data, format, params, hessian))
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| format!("cannot encode '{}': {e}", w.source))?;
            tick();
            Ok(Choices { kind: kind_of(&w.source), name: w.source, weights: w.rows * w.cols, options })
        })
        .collect()
}

/// Widths above this are encoded round-to-nearest even with statistics: error feedback buys
/// little there and costs as much as at any width.
const FEEDBACK_MAX_BITS: u8 = 5;

fn encode_one(w: &Weight, data: &[f32], format: Format, params: &EncodeParams, hessian: Option<&Hessian>) -> Result<Encoding, String> {
    let Format { bits, group } = format;
    let p = EncodeParams { bits, group, max_bpw: None, ..params.clone() };
    let Some(h) = hessian else {
        let (encoded, _) = encode_with_reconstruction(data, w.rows, w.cols, &p)?;
        let distortion = encoded.stats.rel_rmse.powi(2);
        return Ok(Encoding { format, encoded, distortion });
    };
    let (encoded, recon) = if bits <= FEEDBACK_MAX_BITS {
        encode_calibrated(data, w.rows, w.cols, &p, h)?
    } else {
        encode_with_reconstruction(data, w.rows, w.cols, &p)?
    };
    let delta: Vec<f32> = data.iter().zip(&recon).map(|(a, b)| a - b).collect();
    let energy = h.output_error(data, w.rows)?;
    let distortion = if energy > 0.0 { h.output_error(&delta, w.rows)? / energy } else { 0.0 };
    Ok(Encoding { format, encoded, distortion })
}

/// The distinct kinds, in order of first appearance, each with the indices of its weights.
pub fn kinds(choices: &[Choices]) -> Vec<(String, Vec<usize>)> {
    let mut order: Vec<(String, Vec<usize>)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (i, c) in choices.iter().enumerate() {
        let k = *at.entry(&c.kind).or_insert_with(|| {
            order.push((c.kind.clone(), Vec::new()));
            order.len() - 1
        });
        order[k].1.push(i);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::kind_of;

    #[test]
    fn kinds_ignore_layer_numbers() {
        assert_eq!(kind_of("blk.12.attn_q.weight"), "blk.#.attn_q.weight");
        assert_eq!(kind_of("model.layers.3.mlp.down_proj.weight"), "model.layers.#.mlp.down_proj.weight");
        assert_eq!(kind_of("token_embd.weight"), "token_embd.weight");
    }
}
