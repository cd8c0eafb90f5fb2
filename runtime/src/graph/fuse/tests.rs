//! Fusion on small hand-built graphs: the forms the fixtures lack (erf GELU, MatMul + bias,
//! a run-time scale, a padding mask with a row masked out entirely, batch 2, more keys than
//! queries), fused and plain runs compared within 1e-5 relative.

use crate::onnx::attributes::{int_attr, ints_attr};
use crate::onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto};
use crate::onnx::{tensor_to_proto, ExternalData};
use crate::options::SessionOptions;
use crate::session::Session;
use crate::tensor::Tensor;

use crate::ops::testutil::graph_node as n;

fn seq(shape: &[usize], seed: usize) -> Tensor {
    let len: usize = shape.iter().product();
    let data = (0..len).map(|i| ((i * 37 + seed * 11) % 41) as f32 / 13.0 - 1.5).collect();
    Tensor::from_vec(shape, data).unwrap()
}

fn model(nodes: Vec<NodeProto>, inputs: &[&str], initializers: &[(&str, Tensor)]) -> ModelProto {
    let info = |name: &str| ValueInfoProto { name: name.into(), ..Default::default() };
    ModelProto {
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 20 }],
        graph: Some(GraphProto {
            node: nodes,
            input: inputs.iter().map(|i| info(i)).collect(),
            output: vec![info("y")],
            initializer: initializers.iter().map(|(name, t)| tensor_to_proto(name, t)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Declares the model's output `y` as a tensor of `dtype`.
fn declare_output(m: &mut ModelProto, dtype: crate::onnx::proto::tensor_proto::DataType) {
    use crate::onnx::proto::{type_proto, TypeProto};
    let tensor = type_proto::Tensor { elem_type: dtype as i32, shape: None };
    if let Some(g) = m.graph.as_mut() {
        g.output[0].r#type = Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() });
    }
}

/// Runs fused and plain; returns the fused session's op types and the relative gap.
fn compare(model: &ModelProto, feeds: Vec<(String, Tensor)>) -> (Vec<String>, f32) {
    let session = |fuse| Session::from_model_with(model, ExternalData::Refused, &SessionOptions { fuse, ..Default::default() }).unwrap();
    let (fused, plain) = (session(true), session(false));
    let y = |s: &Session| s.run(feeds.clone()).unwrap().remove(0).1;
    let (a, b) = (y(&fused), y(&plain));
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gap = a.iter().zip(b.iter()).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max) / scale;
    assert!(gap.is_finite());
    (fused.graph().nodes().iter().map(|n| n.op_type.clone()).collect(), gap)
}

#[test]
fn matmul_bias_and_erf_gelu_become_one_linear() {
    let nodes = vec![
        n("MatMul", &["x", "w"], "m"),
        n("Add", &["b", "m"], "h"),
        n("Div", &["h", "sqrt2"], "d"),
        n("Erf", &["d"], "e"),
        n("Add", &["e", "one"], "f"),
        n("Mul", &["h", "f"], "g"),
        n("Mul", &["g", "half"], "y"),
    ];
    let inits = [
        ("w", seq(&[8, 16], 1)),
        ("b", seq(&[16], 2)),
        ("sqrt2", Tensor::scalar(std::f32::consts::SQRT_2)),
        ("one", Tensor::scalar(1.0f32)),
        ("half", Tensor::scalar(0.5f32)),
    ];
    let m = model(nodes.clone(), &["x"], &inits);
    let (ops, gap) = compare(&m, vec![("x".into(), seq(&[2, 3, 8], 3))]);
    assert_eq!(ops, ["RbeLinear"]);
    assert!(gap <= 1e-5, "gap {gap}");
    // With the GELU's intermediate also read elsewhere, only MatMul + bias fuses.
    let mut shared = nodes;
    shared.push(n("Add", &["g", "f"], "y2"));
    let mut m = model(shared, &["x"], &inits);
    m.graph.as_mut().unwrap().output.push(ValueInfoProto { name: "y2".into(), ..Default::default() });
    let (ops, gap) = compare(&m, vec![("x".into(), seq(&[2, 3, 8], 3))]);
    assert_eq!(ops.iter().filter(|o| *o == "RbeLinear").count(), 1);
    assert!(ops.contains(&"Erf".to_string()));
    assert!(gap <= 1e-5, "gap {gap}");
}

#[test]
fn gemm_then_the_gelu_op_becomes_one_linear() {
    for approximate in ["tanh", "none"] {
        let mut gemm = n("Gemm", &["x", "w", "b"], "h");
        gemm.attribute.push(int_attr("transB", 1));
        let mut gelu = n("Gelu", &["h"], "y");
        gelu.attribute.push(crate::onnx::attributes::string_attr("approximate", approximate));
        let m = model(vec![gemm, gelu], &["x"], &[("w", seq(&[16, 8], 1)), ("b", seq(&[16], 2))]);
        let (ops, gap) = compare(&m, vec![("x".into(), seq(&[5, 8], 3))]);
        assert_eq!(ops, ["RbeLinear"]);
        assert!(gap <= 1e-5, "{approximate}: gap {gap}");
    }
}

#[test]
fn attention_with_runtime_scale_padding_and_nan_guard_becomes_one_op() {
    // Q [B,H,T,D], K stored [B,S,H,D] (transposed in the graph), V [B,H,S,D], mask [B,1,T,S].
    let (b, h, t, s, d) = (2, 3, 4, 9, 8);
    let mut softmax = n("Softmax", &["logits"], "p");
    softmax.attribute.push(int_attr("axis", -1));
    let mut transpose = n("Transpose", &["k"], "kt");
    transpose.attribute.push(ints_attr("perm", &[0, 2, 3, 1]));
    let nodes = vec![
        n("Sqrt", &["inv_d"], "scale"),
        n("Mul", &["q", "scale"], "qs"),
        transpose,
        n("Mul", &["kt", "scale"], "ks"),
        n("MatMul", &["qs", "ks"], "scores"),
        n("Add", &["scores", "mask"], "logits"),
        softmax,
        n("IsNaN", &["p"], "nan"),
        n("Where", &["nan", "zero", "p"], "pz"),
        n("MatMul", &["pz", "v"], "y"),
    ];
    let m = model(nodes, &["q", "k", "v", "mask", "inv_d"], &[("zero", Tensor::scalar(0.0f32))]);
    // Causal over the last t keys after s - t past ones; batch 1 pads its first 3 keys, and
    // its query row 0 also loses every other key: a row masked out entirely.
    let mask: Vec<f32> = (0..b * t * s)
        .map(|i| {
            let (bi, ti, j) = (i / (t * s), i / s % t, i % s);
            let visible = j <= s - t + ti && !(bi == 1 && (j < 3 || ti == 0));
            if visible { 0.0 } else { f32::NEG_INFINITY }
        })
        .collect();
    let feeds = vec![
        ("q".to_string(), seq(&[b, h, t, d], 1)),
        ("k".to_string(), seq(&[b, s, h, d], 2)),
        ("v".to_string(), seq(&[b, h, s, d], 3)),
        ("mask".to_string(), Tensor::from_vec(&[b, 1, t, s], mask).unwrap()),
        ("inv_d".to_string(), Tensor::from_vec(&[1], vec![1.0 / (d as f32).sqrt()]).unwrap()),
    ];
    let (ops, gap) = compare(&m, feeds.clone());
    assert_eq!(ops, ["Sqrt", "RbeAttention"]);
    assert!(gap <= 1e-5, "gap {gap}");
    // A "scale" that is not one value multiplies like the Mul it replaced.
    let mut per_batch = feeds;
    per_batch[4].1 = Tensor::from_vec(&[b, 1, 1, 1], vec![0.3f32, 0.6]).unwrap();
    let (_, gap) = compare(&m, per_batch);
    assert!(gap <= 1e-5, "gap {gap}");
}

#[test]
fn decomposed_rms_norms_become_one_op_that_does_not_overflow_in_f16() {
    let mean = n("ReduceMean", &["p", "last"], "v");
    let head = [n("Pow", &["x", "two"], "p"), mean, n("Add", &["v", "eps"], "a"), n("Sqrt", &["a"], "s")];
    let by_div = [n("Div", &["x", "s"], "d"), n("Mul", &["d", "g"], "y")];
    let by_reciprocal = [n("Reciprocal", &["s"], "r"), n("Mul", &["x", "r"], "d"), n("Mul", &["g", "d"], "y")];
    let last = Tensor::from_vec(&[1], vec![-1i64]).unwrap();
    let inits = [("two", Tensor::scalar(2.0f32)), ("eps", Tensor::scalar(1e-5f32)), ("g", seq(&[8], 4)), ("last", last)];
    for tail in [&by_div[..], &by_reciprocal[..]] {
        let nodes: Vec<NodeProto> = head.iter().chain(tail).cloned().collect();
        let (ops, gap) = compare(&model(nodes, &["x"], &inits), vec![("x".into(), seq(&[2, 3, 8], 3))]);
        assert_eq!(ops, ["SimplifiedLayerNormalization"]);
        assert!(gap <= 1e-5, "gap {gap}");
    }
    // In float16, x = 300 squares past f16's range; neither the fused op nor the plain ops
    // (a half graph computes in f32 between its casts and outputs) overflow.
    let half = |t: Tensor| crate::ops::cast::cast(&t, crate::tensor::DType::F16);
    let inits16: Vec<(&str, Tensor)> = inits.iter().map(|(k, t)| (*k, if *k == "last" { t.clone() } else { half(t.clone()) })).collect();
    let nodes: Vec<NodeProto> = head.iter().chain(&by_div).cloned().collect();
    let m = model(nodes, &["x"], &inits16);
    let x = half(Tensor::from_vec(&[1, 8], vec![300.0f32, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]).unwrap());
    let run = |fuse| {
        let s = Session::from_model_with(&m, ExternalData::Refused, &SessionOptions { fuse, ..Default::default() }).unwrap();
        let y = s.run(vec![("x".into(), x.clone())]).unwrap().remove(0).1;
        crate::ops::cast::cast(&y, crate::tensor::DType::F32)
    };
    // rms = sqrt((300² + 140) / 8) ≈ 106.2: y[0] ≈ 2.83 · g[0].
    let g0 = inits[2].1.as_f32().unwrap()[[0]];
    for fuse in [false, true] {
        let y = run(fuse);
        let y = y.as_f32().unwrap();
        assert!((y[[0, 0]] - 300.0 / 106.24 * g0).abs() <= 0.02 * g0.abs().max(0.1), "fuse {fuse}: {}", y[[0, 0]]);
    }
}

/// A residual Add after a linear layer, straight or through the Reshape the exports put after
/// a 2-D Gemm, folds into the linear node; a residual that broadcasts still gives the Add's
/// values; a constant addend stays a bias or an Add, and a linear output read twice stays.
#[test]
fn residual_adds_fold_into_the_linear_before_or_after_a_reshape() {
    let shape = Tensor::from_vec(&[3], vec![1i64, 4, 16]).unwrap();
    let mut gemm = n("Gemm", &["x", "w", "b"], "h");
    gemm.attribute.push(int_attr("transB", 1));
    let inits = [("w", seq(&[16, 8], 1)), ("b", seq(&[16], 2)), ("shape", shape)];
    let reshaped = |residual_first: bool| {
        let add = if residual_first { n("Add", &["r", "hr"], "y") } else { n("Add", &["hr", "r"], "y") };
        vec![gemm.clone(), n("Reshape", &["h", "shape"], "hr"), add]
    };
    for (residual_first, r_shape) in [(true, vec![1, 4, 16]), (false, vec![1, 4, 16]), (false, vec![2, 1, 16])] {
        let m = model(reshaped(residual_first), &["x", "r"], &inits);
        let feeds = vec![("x".into(), seq(&[4, 8], 3)), ("r".into(), seq(&r_shape, 4))];
        let (ops, gap) = compare(&m, feeds);
        assert_eq!(ops, ["RbeLinear"], "residual {r_shape:?}");
        assert!(gap <= 1e-5, "residual {r_shape:?}: gap {gap}");
    }
    let straight = vec![n("MatMul", &["x", "w2"], "m"), n("Add", &["m", "b"], "h"), n("Add", &["h", "r"], "y")];
    let m = model(straight.clone(), &["x", "r"], &[("w2", seq(&[8, 16], 1)), ("b", seq(&[16], 2))]);
    let (ops, gap) = compare(&m, vec![("x".into(), seq(&[2, 3, 8], 3)), ("r".into(), seq(&[2, 3, 16], 4))]);
    assert_eq!(ops, ["RbeLinear"]);
    assert!(gap <= 1e-5, "gap {gap}");
    let constant = vec![gemm.clone(), n("Add", &["h", "c"], "y")];
    let (ops, _) = compare(&model(constant, &["x"], &[inits[0].clone(), inits[1].clone(), ("c", seq(&[16], 5))]), vec![("x".into(), seq(&[4, 8], 3))]);
    assert_eq!(ops, ["RbeLinear", "Add"]);
    let mut shared = straight;
    shared.push(n("Mul", &["h", "h"], "y2"));
    let mut m = model(shared, &["x", "r"], &[("w2", seq(&[8, 16], 1)), ("b", seq(&[16], 2))]);
    m.graph.as_mut().unwrap().output.push(ValueInfoProto { name: "y2".into(), ..Default::default() });
    let (ops, gap) = compare(&m, vec![("x".into(), seq(&[2, 3, 8], 3)), ("r".into(), seq(&[2, 3, 16], 4))]);
    assert!(ops.contains(&"Add".to_string()), "{ops:?}");
    assert!(gap <= 1e-5, "gap {gap}");
}

/// An fp16 graph's MatMul + bias by float16 constants fuses too (the weight is widened once at
/// load, not at every run), and its output stays float16, within f16 rounding of the plain ops.
#[test]
fn float16_matmul_and_bias_become_one_linear() {
    use half::f16;
    let half = |t: Tensor| Tensor::from_vec(t.shape(), t.as_f32().unwrap().iter().map(|&v| f16::from_f32(v)).collect()).unwrap();
    let nodes = vec![n("MatMul", &["x", "w"], "m"), n("Add", &["m", "b"], "y")];
    let mut m = model(nodes, &["x"], &[("w", half(seq(&[8, 16], 1))), ("b", half(seq(&[16], 2)))]);
    declare_output(&mut m, crate::onnx::proto::tensor_proto::DataType::Float16);
    let session = |fuse| Session::from_model_with(&m, ExternalData::Refused, &SessionOptions { fuse, ..Default::default() }).unwrap();
    let (fused, plain) = (session(true), session(false));
    let ops: Vec<&str> = fused.graph().nodes().iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["RbeLinear"]);
    let feeds = vec![("x".to_string(), half(seq(&[2, 3, 8], 3)))];
    let y = |s: &Session| s.run(feeds.clone()).unwrap().remove(0).1;
    let (a, b) = (y(&fused), y(&plain));
    assert_eq!((a.dtype(), a.shape()), (b.dtype(), b.shape()));
    let widen = |t: &Tensor| -> Vec<f32> { t.array::<f16>().unwrap().iter().map(|v| v.to_f32()).collect() };
    let (a, b) = (widen(&a), widen(&b));
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gap = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max) / scale;
    assert!(gap <= 2e-3, "gap {gap}");
}

/// Found by fuzzing (fuzz/, target `graph`): a `Mul` of three inputs made the RMSNorm matcher
/// compute the other input's index as `1 - 2`, which panicked with overflow checks on.
#[test]
fn a_mul_of_three_inputs_is_an_error_not_a_panic() {
    let m = model(vec![n("Mul", &["x", "x", "x"], "y")], &["x"], &[]);
    let result = std::panic::catch_unwind(|| Session::from_model(&m, ExternalData::Refused).err());
    assert!(result.is_ok(), "the graph builder panicked");
}
