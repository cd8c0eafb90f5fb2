//! Reading next-token predictions out of a logits tensor.

use rbe_runtime::Tensor;

/// A candidate next token and its softmax probability.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Candidate {
    /// Token id.
    pub token: usize,
    /// Probability under the softmax of the last position's logits.
    pub prob: f32,
}

/// For each batch row of `[batch, seq, vocab]` (or `[batch, vocab]`) logits, the `k` most
/// likely next tokens at the last position, most likely first.
pub fn top_k(logits: &Tensor, k: usize) -> Result<Vec<Vec<Candidate>>, String> {
    let a = logits.as_f32().map_err(|e| e.to_string())?;
    let shape = a.shape();
    let (batch, rows_per_batch, vocab) = match *shape {
        [b, s, v] => (b, s, v),
        [b, v] => (b, 1, v),
        _ => return Err(format!("logits must be [batch, seq, vocab], got {shape:?}")),
    };
    if rows_per_batch == 0 || vocab == 0 {
        return Ok(vec![Vec::new(); batch]);
    }
    let flat = a.as_standard_layout();
    let data = flat.as_slice().ok_or("logits are not contiguous")?;
    Ok((0..batch)
        .map(|b| {
            let start = (b * rows_per_batch + rows_per_batch - 1) * vocab;
            let row = &data[start..start + vocab];
            let probs = softmax(row);
            let mut order: Vec<usize> = (0..vocab).collect();
            order.sort_by(|&x, &y| probs[y].total_cmp(&probs[x]));
            order
                .into_iter()
                .take(k)
                .map(|token| Candidate { token, prob: probs[token] })
                .collect()
        })
        .collect())
}

/// Numerically stable softmax of one row.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = row.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}
