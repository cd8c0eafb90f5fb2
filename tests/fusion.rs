//! Fusion: on every fixture, plain and converted, the outputs with fusion match those
//! without it, and the patterns are recognised (one attention core per layer, every linear
//! layer, every decomposed LayerNorm; in each branch of a merged decoder), so a matcher that
//! stops matching fails here.

mod common;

use common::{cases, fixture, FIXTURES, LLAMA_FIXTURES};
use rbe::codec::EncodeParams;
use rbe::convert::{convert_file, Progress};
use rbe_runtime::onnx::proto::ModelProto;
use rbe_runtime::onnx::{read_model, ExternalData};
use rbe_runtime::graph::Graph;
use rbe_runtime::{Session, SessionOptions};

/// Transformer layers in each fixture.
const N_LAYER: usize = 2;

fn options(fuse: bool) -> SessionOptions {
    SessionOptions { fuse, ..SessionOptions::default() }
}

/// The graphs that each compute the whole decoder: the branches of a merged decoder's `If`
/// (first step, with cache), else the main graph.
fn decoders(session: &Session) -> Vec<&Graph> {
    let branches: Vec<&Graph> = session.graph().nodes().iter().flat_map(|n| n.nested_graphs()).collect();
    if branches.is_empty() {
        vec![session.graph()]
    } else {
        branches
    }
}

/// Nodes of `op_type` in each decoder graph (see [`decoders`]), all equal or the test fails.
fn count(session: &Session, op_type: &str) -> usize {
    let counts: Vec<usize> =
        decoders(session).iter().map(|g| g.nodes().iter().filter(|n| n.op_type == op_type).count()).collect();
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{op_type}: {counts:?} across the branches");
    counts[0]
}

/// Nodes in each decoder graph, summed.
fn node_total(session: &Session) -> usize {
    decoders(session).iter().map(|g| g.nodes().len()).sum()
}

/// Max |fused - plain| over all outputs of all reference inputs, relative to the largest
/// plain magnitude of each output.
fn worst_relative_gap(fused: &Session, plain: &Session, name: &str) -> f32 {
    let mut worst = 0f32;
    for case in cases(name) {
        let a = fused.run(case.inputs.clone()).unwrap_or_else(|e| panic!("{name}/{} fused: {e}", case.name));
        let b = plain.run(case.inputs.clone()).unwrap_or_else(|e| panic!("{name}/{} plain: {e}", case.name));
        for ((out, x), (_, y)) in a.iter().zip(&b) {
            assert_eq!(x.shape(), y.shape(), "{name}/{}/{out}", case.name);
            let (x, y) = (x.as_f32().unwrap(), y.as_f32().unwrap());
            let scale = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
            let gap = x.iter().zip(y.iter()).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(gap.is_finite(), "{name}/{}/{out}: non-finite gap", case.name);
            worst = worst.max(gap / scale);
        }
    }
    worst
}

fn sessions(model: &ModelProto, data: ExternalData) -> (Session, Session) {
    (
        Session::from_model_with(model, data, &options(true)).unwrap(),
        Session::from_model_with(model, data, &options(false)).unwrap(),
    )
}

#[test]
fn fused_fixtures_match_unfused_and_fuse_every_layer() {
    for name in FIXTURES {
        let model = read_model(&fixture(name)).unwrap();
        let (fused, plain) = sessions(&model, ExternalData::Refused);
        assert_eq!(count(&plain, "RbeAttention"), 0, "{name}: fused without fusion");
        assert_eq!(count(&fused, "RbeAttention"), N_LAYER, "{name}: attention cores");
        // Every product by a constant weight (four per layer and the tied head, whose weight
        // some exports transpose) becomes RbeLinear, packed once; the GELUs go inside, so no
        // Tanh is left.
        assert_eq!(count(&fused, "RbeLinear"), 4 * N_LAYER + 1, "{name}: linears");
        assert_eq!((count(&fused, "Gemm"), count(&fused, "MatMul")), (0, 0), "{name}: products left");
        assert_eq!((count(&fused, "Tanh"), count(&plain, "Tanh")), (0, N_LAYER), "{name}: GELU nodes left");
        // Opset 14 exports spell LayerNorm out: two per layer and the final one.
        let decomposed = if name.contains("op14") { 2 * N_LAYER + 1 } else { 0 };
        assert_eq!(count(&fused, "RbeLayerNorm"), decomposed, "{name}: decomposed LayerNorms");
        assert!(node_total(&fused) < node_total(&plain));
        let gap = worst_relative_gap(&fused, &plain, name);
        println!("{name:24} fused vs plain: max relative gap {gap:.2e}");
        assert!(gap <= 1e-5, "{name}: fused outputs differ by {gap:.2e} relative");
    }
}

#[test]
fn fused_converted_fixtures_match_unfused() {
    for name in ["gpt2_legacy_op14_mask", "gpt2_dynamo_op18", "gpt2_optimum_past", "gpt2_optimum_merged"] {
        let params = EncodeParams::preset("q4").unwrap();
        let (bytes, _) = convert_file(&fixture(name), &params, "q4", 1, &Progress::none()).unwrap();
        let c = rbe_runtime::container::unpack(&bytes).unwrap();
        let (fused, plain) = sessions(&c.model, ExternalData::Sections(&c.sections));
        assert_eq!(count(&fused, "RbeAttention"), N_LAYER, "{name}: attention cores");
        assert_eq!(count(&fused, "RbeMatMul"), count(&plain, "RbeMatMul"), "{name}: converted linears");
        assert_eq!((count(&fused, "Tanh"), count(&plain, "Tanh")), (0, N_LAYER), "{name}: GELU nodes left");
        let gap = worst_relative_gap(&fused, &plain, name);
        println!("{name:24} converted, fused vs plain: max relative gap {gap:.2e}");
        assert!(gap <= 1e-5, "{name}: fused outputs differ by {gap:.2e} relative");
    }
}

/// The Llama-style exports (torch legacy with eager attention, dynamo with SDPA, optimum with
/// past), plain and converted: one attention core per layer (grouped K/V heads repeated by
/// plain ops in front of it), all seven products by a weight per layer and the tied head
/// fused, every decomposed RMSNorm one node; the same outputs as without fusion.
#[test]
fn llama_fixtures_fuse_every_layer() {
    for name in LLAMA_FIXTURES {
        let model = read_model(&fixture(name)).unwrap();
        let (fused, plain) = sessions(&model, ExternalData::Refused);
        assert_eq!(count(&fused, "RbeAttention"), N_LAYER, "{name}: attention cores");
        assert_eq!(count(&fused, "Softmax"), 0, "{name}: softmax left");
        assert_eq!(count(&fused, "RbeLinear"), 7 * N_LAYER + 1, "{name}: linears");
        assert_eq!(count(&fused, "Gemm"), 0, "{name}: Gemm left");
        // Only the rotary table's product (inverse frequencies x positions) may stay a MatMul.
        assert!(count(&fused, "MatMul") <= 1, "{name}: products left");
        assert_eq!(count(&fused, "SimplifiedLayerNormalization"), 2 * N_LAYER + 1, "{name}: RMSNorms");
        assert_eq!(count(&fused, "Pow"), 0, "{name}: decomposed RMSNorm left");
        let gap = worst_relative_gap(&fused, &plain, name);
        println!("{name:24} fused vs plain: max relative gap {gap:.2e}");
        assert!(gap <= 1e-5, "{name}: fused outputs differ by {gap:.2e} relative");

        let params = EncodeParams::preset("q4").unwrap();
        let (bytes, _) = convert_file(&fixture(name), &params, "q4", 1, &Progress::none()).unwrap();
        let c = rbe_runtime::container::unpack(&bytes).unwrap();
        let (fused, plain) = sessions(&c.model, ExternalData::Sections(&c.sections));
        assert_eq!(count(&plain, "RbeMatMul"), 7 * N_LAYER + 1, "{name}: converted linears");
        assert_eq!(count(&fused, "RbeAttention"), N_LAYER, "{name}: converted attention cores");
        let gap = worst_relative_gap(&fused, &plain, name);
        assert!(gap <= 1e-5, "{name}: converted, fused outputs differ by {gap:.2e} relative");
    }
}

/// The presents of `outputs`, as the next step's `past_key_values.*` feeds.
fn presents_as_past(outputs: Vec<(String, rbe_runtime::Tensor)>) -> Vec<(String, rbe_runtime::Tensor)> {
    outputs
        .into_iter()
        .filter_map(|(name, t)| name.strip_prefix("present").map(|rest| (format!("past_key_values{rest}"), t)))
        .collect()
}

/// A KV cache's Concats (a past input joined with the new keys into a present output) become
/// `RbeKvAppend`. Fed back step after step, each present is appended in place while its
/// allocation has room (the next present shares it), then moves to a larger one; the values
/// are the plain Concat's throughout.
#[test]
fn kv_cache_presents_are_appended_in_place() {
    for name in ["gpt2_optimum_past", "llama_optimum_past"] {
        let model = read_model(&fixture(name)).unwrap();
        let (fused, plain) = sessions(&model, ExternalData::Refused);
        assert_eq!(count(&fused, "RbeKvAppend"), 2 * N_LAYER, "{name}: cache appends");
        assert_eq!(count(&plain, "RbeKvAppend"), 0, "{name}: fused without fusion");
        let ids = [464i64, 268, 758];
        let mut fused_past: Vec<(String, rbe_runtime::Tensor)> = Vec::new();
        let mut plain_past = Vec::new();
        let (mut in_place, mut moved) = (0, 0);
        for step in 0..40 {
            let (new, past_len) = if step == 0 { (&ids[..], 0) } else { (&ids[step % 3..step % 3 + 1], 2 + step) };
            let feeds = |past| rbe::feeds::token_feeds_after(fused.inputs(), new, past_len, past).unwrap();
            let before: Vec<*const f32> = fused_past.iter().map(|(_, t)| t.as_f32().unwrap().as_ptr()).collect();
            let fused_out = fused.run(feeds(std::mem::take(&mut fused_past))).unwrap();
            let plain_out = plain.run(feeds(std::mem::take(&mut plain_past))).unwrap();
            for ((out, x), (_, y)) in fused_out.iter().zip(&plain_out) {
                assert_eq!(x.shape(), y.shape(), "{name} step {step} {out}");
                let gap = x.as_f32().unwrap().iter().zip(y.as_f32().unwrap().iter()).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
                assert!(gap <= 1e-4, "{name} step {step} {out}: {gap:.2e}");
            }
            fused_past = presents_as_past(fused_out);
            plain_past = presents_as_past(plain_out);
            for ((_, t), was) in fused_past.iter().zip(&before) {
                if t.as_f32().unwrap().as_ptr() == *was {
                    in_place += 1;
                } else {
                    moved += 1;
                }
            }
        }
        assert_eq!(fused_past.len(), 2 * N_LAYER, "{name}: presents");
        // 42 positions: room runs out twice or three times, every other step appends in place.
        assert!(in_place >= 30 * 2 * N_LAYER, "{name}: {in_place} appends in place, {moved} moves");
        assert!(moved > 0 && moved <= 4 * 2 * N_LAYER, "{name}: {moved} moves");
    }
}

#[test]
fn a_broken_pattern_still_runs_through_the_plain_ops() {
    // A graph output inside the attention core keeps it unfused, and the result is the same.
    let name = "gpt2_legacy_op17";
    let mut model = read_model(&fixture(name)).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let softmax = graph.node.iter().find(|n| n.op_type == "Softmax").unwrap().output[0].clone();
    graph.output.push(rbe_runtime::onnx::proto::ValueInfoProto { name: softmax, ..Default::default() });
    let (fused, plain) = sessions(&model, ExternalData::Refused);
    assert_eq!(count(&fused, "RbeAttention"), N_LAYER - 1);
    assert!(worst_relative_gap(&fused, &plain, name) <= 1e-5);
}

/// `rbe-run --bench 2 --profile` on the tiny GPT-2 (plus `extra` flags): its stdout.
fn profile_output(extra: &[&str]) -> String {
    let model = fixture("gpt2_legacy_op17");
    let mut args = vec![model.to_str().unwrap(), "--input-ids", "464,68,75", "--bench", "2", "--profile"];
    args.extend_from_slice(extra);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbe-run")).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("all kernels"), "{stdout}");
    // The same RBE_CPU reaches the child, so it names this process's level.
    let isa = format!("isa: {}", rbe_runtime::kernels::isa::Isa::current());
    assert!(stdout.lines().any(|line| line == isa), "no {isa:?} line in {stdout}");
    stdout
}

/// `rbe-run --bench N --profile`'s table: its row for `op` as (nodes, ms per run), if any.
fn profile_row(extra: &[&str], op: &str) -> Option<(usize, f64)> {
    let stdout = profile_output(extra);
    stdout.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [name, nodes, ms, _share] if *name == op => Some((nodes.parse().ok()?, ms.parse().ok()?)),
            _ => None,
        }
    })
}

#[test]
fn the_profile_names_the_slowest_nodes_slowest_first() {
    let stdout = profile_output(&[]);
    let (table, slowest) = stdout.split_once("slowest nodes:\n").expect("a slowest-nodes list");
    let ops: Vec<&str> = table.lines().filter_map(|line| line.split_whitespace().next()).collect();
    let rows: Vec<(&str, &str, f64)> = slowest
        .lines()
        .skip(1)
        .map(|line| match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [node, op, ms, _share] => (*node, *op, ms.parse().expect("ms per run")),
            _ => panic!("not a node row: {line:?}"),
        })
        .collect();
    assert_eq!(rows.len(), 8, "{stdout}");
    let graph = read_model(&fixture("gpt2_legacy_op17")).unwrap();
    for (node, op, _) in &rows {
        assert!(ops.contains(op), "{op} is not in the op table:\n{stdout}");
        // Fused nodes take the name of a node they replace (RbeAttention: the Softmax's, suffixed).
        let original = node.strip_suffix("/RbeAttention").unwrap_or(node);
        assert!(graph.graph.as_ref().unwrap().node.iter().any(|n| n.name == original), "{node} is no node of the model");
    }
    assert!(rows.windows(2).all(|w| w[0].2 >= w[1].2), "not slowest first:\n{stdout}");
}

#[test]
fn the_profile_counts_fused_and_plain_nodes_per_op() {
    let (nodes, ms) = profile_row(&[], "ai.rbe::RbeAttention").expect("fused attention in the profile");
    assert_eq!(nodes, N_LAYER);
    assert!(ms >= 0.0);
    assert_eq!(profile_row(&["--no-fuse"], "ai.rbe::RbeAttention"), None);
    assert_eq!(profile_row(&["--no-fuse"], "Softmax").map(|(n, _)| n), Some(N_LAYER));
}
