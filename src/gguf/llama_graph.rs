//! Builds the ONNX graph of a Llama-family GGUF model from standard ops the runtime runs, with
//! the inputs and outputs of optimum's with-past exports: `input_ids`, `attention_mask`,
//! `position_ids`, `past_key_values.{i}.key/value` in; `logits`, `present.{i}.key/value` out.
//!
//! RMSNorm is Pow/ReduceMean/Add/Sqrt/Div/Mul, rotary takes Cos/Sin of `position_ids · inv_freq`
//! in the rotate-half form (Slice/Neg/Concat), SiLU is `x·Sigmoid(x)`,
//! grouped-query attention repeats K/V heads by Unsqueeze/Expand/Reshape, and linears are
//! `MatMul(x, Transpose(W))` on the file's `[out, in]` weights (a tied head shares the
//! embedding table).

use rbe_runtime::onnx::proto::ModelProto;
use rbe_runtime::{DType, Tensor};

use super::config::{LlamaConfig, RopeLayout};
use super::error::GgufError;
use super::onnx_builder::{Attr, Dim, OnnxBuilder};
use super::reader::GgufFile;
use super::weights::{deinterleave_rows, SourceTensor, Weights};

/// Added to masked attention scores (finite, so a sum of two masks stays finite).
const MASKED: f32 = -1e30;

/// A GGUF model as an ONNX graph, with what it was built from.
pub struct LlamaGraph {
    /// The graph, weights as f32 initializers.
    pub model: ModelProto,
    /// The hyperparameters.
    pub config: LlamaConfig,
    /// Vocabulary size (rows of the embedding table).
    pub vocab: usize,
    /// Every GGUF tensor used, with its source type.
    pub sources: Vec<SourceTensor>,
}

/// Builds the graph of `file`.
pub fn build(file: &GgufFile) -> Result<LlamaGraph, GgufError> {
    let config = LlamaConfig::from_metadata(&file.metadata)?;
    let embd = file.tensor("token_embd.weight").ok_or_else(|| GgufError::Model("tensor 'token_embd.weight' is missing".into()))?;
    let vocab = match embd.shape().as_slice() {
        &[v, d] if d == config.hidden && v > 0 => v,
        other => return Err(GgufError::Model(format!("token_embd.weight has shape {other:?}, expected [vocab, {}]", config.hidden))),
    };
    let mut b = Builder { g: OnnxBuilder::default(), w: Weights::new(file), c: &config };
    b.declare_io(vocab);
    let embedding = b.weight("token_embd.weight", &[vocab, config.hidden], None)?;
    let mut x = b.g.op("Gather", "embed", &[&embedding, "input_ids"], &[Attr::Int("axis", 0)]);
    let mask = b.attention_mask();
    let (cos, sin) = b.rotary()?;
    for layer in 0..config.layers {
        x = b.block(layer, &x, &mask, &cos, &sin)?;
    }
    let norm = b.rms_norm("output_norm", &x)?;
    let head = if b.w.has("output.weight") { b.weight("output.weight", &[vocab, config.hidden], None)? } else { embedding };
    let head_t = b.g.op("Transpose", "lm_head", &[&head], &[Attr::Ints("perm", &[1, 0])]);
    b.g.op_into("MatMul", "lm_head", &[&norm, &head_t], &[], "logits");
    let sources = b.w.taken;
    let model = b.g.finish(&format!("{}-gguf", config.arch), "rbe-convert (GGUF import)");
    Ok(LlamaGraph { model, config, vocab, sources })
}

struct Builder<'f, 'c> {
    g: OnnxBuilder,
    w: Weights<'f>,
    c: &'c LlamaConfig,
}

impl Builder<'_, '_> {
    fn declare_io(&mut self, vocab: usize) {
        let (kvh, hd) = (self.c.kv_heads, self.c.head_dim);
        self.g.input("input_ids", DType::I64, &[Dim::Named("batch_size"), Dim::Named("sequence_length")]);
        self.g.input("attention_mask", DType::I64, &[Dim::Named("batch_size"), Dim::Named("total_sequence_length")]);
        self.g.input("position_ids", DType::I64, &[Dim::Named("batch_size"), Dim::Named("sequence_length")]);
        let past = [Dim::Named("batch_size"), Dim::Fixed(kvh), Dim::Named("past_sequence_length"), Dim::Fixed(hd)];
        let present = [Dim::Named("batch_size"), Dim::Fixed(kvh), Dim::Named("total_sequence_length"), Dim::Fixed(hd)];
        for i in 0..self.c.layers {
            self.g.input(&format!("past_key_values.{i}.key"), DType::F32, &past);
            self.g.input(&format!("past_key_values.{i}.value"), DType::F32, &past);
        }
        self.g.output("logits", DType::F32, &[Dim::Named("batch_size"), Dim::Named("sequence_length"), Dim::Fixed(vocab)]);
        for i in 0..self.c.layers {
            self.g.output(&format!("present.{i}.key"), DType::F32, &present);
            self.g.output(&format!("present.{i}.value"), DType::F32, &present);
        }
    }

    /// Adds GGUF tensor `name` (of `shape`) as an initializer; `heads` de-interleaves Q/K rows.
    fn weight(&mut self, name: &str, shape: &[usize], heads: Option<usize>) -> Result<String, GgufError> {
        let mut t = self.w.get(name, shape)?;
        if let (Some(h), RopeLayout::Interleaved) = (heads, self.c.rope_layout) {
            t = deinterleave_rows(&t, h)?;
        }
        Ok(self.g.initializer(name, &t))
    }

    /// `[B, 1, S, T]` additive mask: causal over past + new positions, plus padding keys from
    /// `attention_mask`.
    fn attention_mask(&mut self) -> String {
        let g = &mut self.g;
        let n = "mask";
        let two = g.initializer("mask.index2", &Tensor::scalar(2i64));
        let one_i = g.initializer("mask.index1", &Tensor::scalar(1i64));
        let zero_i = g.initializer("mask.zero", &Tensor::scalar(0i64));
        let past_shape = g.op("Shape", n, &["past_key_values.0.key"], &[]);
        let past_len = g.op("Gather", n, &[&past_shape, &two], &[Attr::Int("axis", 0)]);
        let ids_shape = g.op("Shape", n, &["input_ids"], &[]);
        let seq = g.op("Gather", n, &[&ids_shape, &one_i], &[Attr::Int("axis", 0)]);
        let total = g.op("Add", n, &[&past_len, &seq], &[]);
        let q_pos = g.op("Range", n, &[&past_len, &total, &one_i], &[]);
        let k_pos = g.op("Range", n, &[&zero_i, &total, &one_i], &[]);
        let axis1 = g.ints("mask.axes1", &[1]);
        let q_col = g.op("Unsqueeze", n, &[&q_pos, &axis1], &[]);
        let allowed = g.op("LessOrEqual", n, &[&k_pos, &q_col], &[]);
        let zero = g.scalar("mask.zero_f", 0.0);
        let masked = g.scalar("mask.masked", MASKED);
        let one = g.scalar("mask.one_f", 1.0);
        let causal = g.op("Where", n, &[&allowed, &zero, &masked], &[]);
        let keep = g.op("Cast", n, &["attention_mask"], &[Attr::Int("to", DType::F32.to_onnx() as i64)]);
        let dropped = g.op("Sub", n, &[&one, &keep], &[]);
        let key_bias = g.op("Mul", n, &[&dropped, &masked], &[]);
        let axes12 = g.ints("mask.axes12", &[1, 2]);
        let key_bias = g.op("Unsqueeze", n, &[&key_bias, &axes12], &[]);
        g.op("Add", n, &[&causal, &key_bias], &[])
    }

    /// cos and sin `[B, 1, S, head_dim]` of `position_ids · inv_freq` (computed in the graph,
    /// as the torch export does, so no table is stored and no context length bounds it).
    fn rotary(&mut self) -> Result<(String, String), GgufError> {
        let hd = self.c.head_dim;
        let half = hd / 2;
        let factors = match self.w.optional("rope_freqs.weight", &[half])? {
            Some(t) => t.as_f32().map_err(|e| GgufError::Model(e.to_string()))?.iter().map(|&f| f as f64).collect(),
            None => vec![1.0; half],
        };
        let inv_freq: Vec<f32> = (0..hd)
            .map(|j| {
                let i = j % half;
                (1.0 / self.c.rope_theta.powf(2.0 * i as f64 / hd as f64) / factors[i] / self.c.rope_linear_factor) as f32
            })
            .collect();
        let inv_freq = Tensor::from_vec(&[hd], inv_freq).map_err(|e| GgufError::Model(e.to_string()))?;
        let g = &mut self.g;
        let inv_freq = g.initializer("rope.inv_freq", &inv_freq);
        let axis1 = g.ints("rope.axes1", &[1]);
        let axis2 = g.ints("rope.axes2", &[2]);
        let pos = g.op("Cast", "rope", &["position_ids"], &[Attr::Int("to", DType::F32.to_onnx() as i64)]);
        let pos = g.op("Unsqueeze", "rope", &[&pos, &axis2], &[]);
        let angles = g.op("Mul", "rope", &[&pos, &inv_freq], &[]);
        let mut wave = |op: &str| {
            let w = g.op(op, "rope", &[&angles], &[]);
            g.op("Unsqueeze", "rope", &[&w, &axis1], &[])
        };
        Ok((wave("Cos"), wave("Sin")))
    }

    /// `x / sqrt(mean(x²) + eps) · weight` with weight `{prefix}.weight`.
    fn rms_norm(&mut self, prefix: &str, x: &str) -> Result<String, GgufError> {
        let w = self.weight(&format!("{prefix}.weight"), &[self.c.hidden], None)?;
        let two = self.g.scalar(&format!("{prefix}.two"), 2.0);
        let eps = self.g.scalar(&format!("{prefix}.eps"), self.c.rms_eps);
        let g = &mut self.g;
        let sq = g.op("Pow", prefix, &[x, &two], &[]);
        let mean = g.op("ReduceMean", prefix, &[&sq], &[Attr::Ints("axes", &[-1]), Attr::Int("keepdims", 1)]);
        let var = g.op("Add", prefix, &[&mean, &eps], &[]);
        let rms = g.op("Sqrt", prefix, &[&var], &[]);
        let normed = g.op("Div", prefix, &[x, &rms], &[]);
        Ok(g.op("Mul", prefix, &[&normed, &w], &[]))
    }

    /// `x · Wᵀ (+ bias)` for GGUF weight `{prefix}.weight` `[out, in]`.
    fn linear(&mut self, prefix: &str, x: &str, out: usize, inp: usize, heads: Option<usize>) -> Result<String, GgufError> {
        let w = self.weight(&format!("{prefix}.weight"), &[out, inp], heads)?;
        let wt = self.g.op("Transpose", prefix, &[&w], &[Attr::Ints("perm", &[1, 0])]);
        let y = self.g.op("MatMul", prefix, &[x, &wt], &[]);
        let bias = format!("{prefix}.bias");
        if !self.w.has(&bias) {
            return Ok(y);
        }
        let b = self.weight(&bias, &[out], heads)?;
        Ok(self.g.op("Add", prefix, &[&y, &b], &[]))
    }

    /// `[B, S, heads·hd]` -> `[B, heads, S, hd]`.
    fn split_heads(&mut self, prefix: &str, x: &str, heads: usize) -> String {
        let shape = self.g.ints(&format!("{prefix}.heads_shape"), &[0, 0, heads as i64, self.c.head_dim as i64]);
        let r = self.g.op("Reshape", prefix, &[x, &shape], &[]);
        self.g.op("Transpose", prefix, &[&r], &[Attr::Ints("perm", &[0, 2, 1, 3])])
    }

    /// `x·cos + rotate_half(x)·sin` on `[B, h, S, hd]`.
    fn rope(&mut self, prefix: &str, x: &str, cos: &str, sin: &str) -> String {
        let half = (self.c.head_dim / 2) as i64;
        let g = &mut self.g;
        let axis = g.ints(&format!("{prefix}.rope_axis"), &[3]);
        let zero = g.ints(&format!("{prefix}.rope_0"), &[0]);
        let mid = g.ints(&format!("{prefix}.rope_half"), &[half]);
        let end = g.ints(&format!("{prefix}.rope_end"), &[2 * half]);
        let x1 = g.op("Slice", prefix, &[x, &zero, &mid, &axis], &[]);
        let x2 = g.op("Slice", prefix, &[x, &mid, &end, &axis], &[]);
        let neg = g.op("Neg", prefix, &[&x2], &[]);
        let rotated = g.op("Concat", prefix, &[&neg, &x1], &[Attr::Int("axis", -1)]);
        let a = g.op("Mul", prefix, &[x, cos], &[]);
        let b = g.op("Mul", prefix, &[&rotated, sin], &[]);
        g.op("Add", prefix, &[&a, &b], &[])
    }

    /// `[B, kv_heads, T, hd]` -> `[B, heads, T, hd]`, each K/V head serving heads/kv_heads queries.
    fn repeat_kv(&mut self, prefix: &str, kv: &str) -> String {
        let rep = self.c.heads / self.c.kv_heads;
        if rep == 1 {
            return kv.to_string();
        }
        let g = &mut self.g;
        let axis2 = g.ints(&format!("{prefix}.axes2"), &[2]);
        let expand = g.ints(&format!("{prefix}.expand"), &[1, 1, rep as i64, 1, 1]);
        let shape = g.ints(&format!("{prefix}.shape"), &[0, self.c.heads as i64, -1, self.c.head_dim as i64]);
        let u = g.op("Unsqueeze", prefix, &[kv, &axis2], &[]);
        let e = g.op("Expand", prefix, &[&u, &expand], &[]);
        g.op("Reshape", prefix, &[&e, &shape], &[])
    }

    /// One transformer block: pre-norm attention and SwiGLU MLP, each with its residual.
    fn block(&mut self, i: usize, x: &str, mask: &str, cos: &str, sin: &str) -> Result<String, GgufError> {
        let c = self.c.clone();
        let p = |s: &str| format!("blk.{i}.{s}");
        let (q_out, kv_out) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let h = self.rms_norm(&p("attn_norm"), x)?;
        let q = self.linear(&p("attn_q"), &h, q_out, c.hidden, Some(c.heads))?;
        let k = self.linear(&p("attn_k"), &h, kv_out, c.hidden, Some(c.kv_heads))?;
        let v = self.linear(&p("attn_v"), &h, kv_out, c.hidden, None)?;
        let q = self.split_heads(&p("attn_q"), &q, c.heads);
        let k = self.split_heads(&p("attn_k"), &k, c.kv_heads);
        let v = self.split_heads(&p("attn_v"), &v, c.kv_heads);
        let q = self.rope(&p("attn_q"), &q, cos, sin);
        let k = self.rope(&p("attn_k"), &k, cos, sin);
        let (present_k, present_v) = (format!("present.{i}.key"), format!("present.{i}.value"));
        let past_k = format!("past_key_values.{i}.key");
        let past_v = format!("past_key_values.{i}.value");
        self.g.op_into("Concat", &p("cache"), &[&past_k, &k], &[Attr::Int("axis", 2)], &present_k);
        self.g.op_into("Concat", &p("cache"), &[&past_v, &v], &[Attr::Int("axis", 2)], &present_v);
        let k_all = self.repeat_kv(&p("attn_k.repeat"), &present_k);
        let v_all = self.repeat_kv(&p("attn_v.repeat"), &present_v);
        let scale = self.g.scalar(&p("attn.scale"), 1.0 / (c.head_dim as f32).sqrt());
        let a = p("attn");
        let g = &mut self.g;
        let q_scaled = g.op("Mul", &a, &[&q, &scale], &[]);
        let k_t = g.op("Transpose", &a, &[&k_all], &[Attr::Ints("perm", &[0, 1, 3, 2])]);
        let scores = g.op("MatMul", &a, &[&q_scaled, &k_t], &[]);
        let scores = g.op("Add", &a, &[&scores, mask], &[]);
        let probs = g.op("Softmax", &a, &[&scores], &[Attr::Int("axis", -1)]);
        let ctx = g.op("MatMul", &a, &[&probs, &v_all], &[]);
        let ctx = g.op("Transpose", &a, &[&ctx], &[Attr::Ints("perm", &[0, 2, 1, 3])]);
        let merged = g.ints(&p("attn.merged_shape"), &[0, 0, q_out as i64]);
        let ctx = g.op("Reshape", &a, &[&ctx, &merged], &[]);
        let o = self.linear(&p("attn_output"), &ctx, c.hidden, q_out, None)?;
        let x = self.g.op("Add", &p("attn_residual"), &[x, &o], &[]);
        let h = self.rms_norm(&p("ffn_norm"), &x)?;
        let gate = self.linear(&p("ffn_gate"), &h, c.ffn, c.hidden, None)?;
        let up = self.linear(&p("ffn_up"), &h, c.ffn, c.hidden, None)?;
        let f = p("ffn");
        let sig = self.g.op("Sigmoid", &f, &[&gate], &[]);
        let silu = self.g.op("Mul", &f, &[&gate, &sig], &[]);
        let act = self.g.op("Mul", &f, &[&silu, &up], &[]);
        let down = self.linear(&p("ffn_down"), &act, c.hidden, c.ffn, None)?;
        Ok(self.g.op("Add", &p("ffn_residual"), &[&x, &down], &[]))
    }
}
