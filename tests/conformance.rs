//! The ONNX node conformance suite (written by `tools/conformance.py` under
//! `tests/conformance/`): every committed case goes through `Session` (load + run).
//!
//! A case is *supported* when every op it uses resolves in the standard registry at the
//! case's opset and all its data are tensors of dtypes the runtime has. A supported case must
//! match the expected outputs within the case's own tolerances
//! (`|got - want| <= atol + rtol * |want|`, NaN equals NaN), unless [`EXPECTED_FAILURES`] lists
//! it with the reason. Every other case must end in an `Err`. A panic anywhere fails the test
//! naming the case.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;

use common::suite::{manifest, run_case, supported, Case, Outcome};
use rbe_runtime::ops::Registry;

/// Why the bfloat16 Attention cases miss: 1-2 ulp, and rtol 1e-3 is under bfloat16's spacing.
const BF16_ATTENTION: &str = "the reference rounds every step (inside MatMul and Softmax too) to bfloat16, we \
    accumulate in float32 and round once: 1-2 ulp of bfloat16 (2^-8 relative), over rtol 1e-3";

/// Supported cases known to fail, with the reason. A listed case that passes fails the test,
/// so the list cannot go stale.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    (
        "test_attention_4d_causal_fp16_expanded",
        "the reference rounds every step to float16, we accumulate MatMul/Softmax in float32: 1 ulp over rtol 1e-3",
    ),
    ("test_attention_3d_causal_bf16", BF16_ATTENTION),
    ("test_attention_3d_causal_bf16_expanded", BF16_ATTENTION),
    ("test_attention_4d_attn_mask_causal_bf16", BF16_ATTENTION),
    ("test_attention_4d_attn_mask_causal_bf16_expanded", BF16_ATTENTION),
    ("test_attention_4d_causal_bf16", BF16_ATTENTION),
    ("test_attention_4d_causal_bf16_expanded", BF16_ATTENTION),
    ("test_attention_4d_causal_padded_kv_bf16", BF16_ATTENTION),
    ("test_attention_4d_causal_padded_kv_bf16_expanded", BF16_ATTENTION),
    ("test_attention_4d_padded_kv_bf16", BF16_ATTENTION),
    ("test_attention_4d_padded_kv_bf16_expanded", BF16_ATTENTION),
    ("test_training_dropout", "training-mode Dropout draws numpy's random mask: refused (Err)"),
    ("test_training_dropout_default", "training-mode Dropout draws numpy's random mask: refused (Err)"),
    ("test_training_dropout_default_mask", "training-mode Dropout draws numpy's random mask: refused (Err)"),
    ("test_training_dropout_mask", "training-mode Dropout draws numpy's random mask: refused (Err)"),
];

/// The ops issue 10 asks for: the pass rate over the cases that use only these is reported
/// on its own.
const ISSUE_OPS: &str = "Abs Add And ArgMax ArgMin Attention Cast CastLike Ceil Clip Concat Constant \
    ConstantOfShape Cos CumSum DequantizeLinear Div Dropout DynamicQuantizeLinear Einsum Elu Equal Erf Exp \
    Expand Flatten Floor Gather GatherElements GatherND Gelu Gemm Greater GreaterOrEqual HardSigmoid HardSwish \
    Identity If IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax MatMul MatMulInteger \
    Max Mean Min Mish Mod Mul Neg NonZero Not OneHot Or Pad Pow QuantizeLinear RMSNormalization Range \
    Reciprocal ReduceL2 ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare \
    Relu Reshape RotaryEmbedding Round ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Size Slice \
    Softmax Softplus Split Sqrt Squeeze Sub Sum Swish Tanh Tile TopK Transpose Trilu Unsqueeze Where Xor";

fn suite_dir() -> PathBuf {
    common::root().join("tests/conformance")
}

#[test]
fn onnx_node_conformance_cases() {
    let registry = Registry::standard();
    let cases = manifest(&suite_dir());
    assert!(cases.len() > 1000, "only {} cases in the manifest", cases.len());
    let issue_ops: Vec<&str> = ISSUE_OPS.split_whitespace().collect();
    let (mut passed, mut unsupported, mut known) = (0, 0, 0);
    let (mut issue_cases, mut issue_passed, mut issue_missed) = (0, 0, Vec::new());
    let mut problems = Vec::new();
    for case in &cases {
        let is_supported = supported(&suite_dir(), case, &registry);
        let expected_failure = EXPECTED_FAILURES.iter().find(|(n, _)| *n == case.name);
        let outcome = match catch_unwind(AssertUnwindSafe(|| run_case(&suite_dir(), case))) {
            Ok(o) => o,
            Err(_) => {
                problems.push(format!("{}: PANIC", case.name));
                println!("{}: PANIC", case.name);
                continue;
            }
        };
        let verdict = match (&outcome, is_supported, expected_failure) {
            (Outcome::Passed, _, None) => {
                passed += 1;
                "pass".to_string()
            }
            (Outcome::Passed, _, Some(_)) => {
                problems.push(format!("{}: passes but is listed as an expected failure", case.name));
                "pass (listed as expected failure)".to_string()
            }
            (_, true, Some((_, why))) => {
                known += 1;
                format!("expected failure ({why}): {outcome:?}")
            }
            (_, true, None) => {
                problems.push(format!("{}: {outcome:?}", case.name));
                format!("FAIL {outcome:?}")
            }
            (Outcome::Error(e), false, _) => {
                unsupported += 1;
                format!("unsupported: {e}")
            }
            (Outcome::Mismatch(m), false, _) => {
                problems.push(format!("{}: unsupported but ran to a wrong result: {m}", case.name));
                format!("FAIL (unsupported, wrong result) {m}")
            }
        };
        if case.ops.iter().all(|(d, op, _)| d.is_empty() && issue_ops.contains(&op.as_str())) {
            issue_cases += 1;
            if outcome == Outcome::Passed {
                issue_passed += 1;
            } else {
                issue_missed.push(case.name.as_str());
            }
        }
        println!("{}: {verdict}", case.name);
    }
    println!(
        "conformance, cases using only the issue's ops: {issue_passed} of {issue_cases} pass; not passing: {}",
        issue_missed.join(" ")
    );
    let failed = problems.len();
    println!(
        "conformance: {passed} passed, {unsupported} unsupported, {failed} failed ({known} expected failures) of {}",
        cases.len()
    );
    assert!(problems.is_empty(), "{failed} conformance problems:\n{}", problems.join("\n"));
}

/// Models of ops the runtime does not have: `rbe-run` exits with 2 and one line, no panic.
#[test]
fn rbe_run_refuses_unsupported_cases_with_exit_code_2() {
    let registry = Registry::standard();
    let unsupported: Vec<Case> = manifest(&suite_dir())
        .into_iter()
        .filter(|c| c.ops.iter().any(|(d, op, v)| registry.resolve(d, op, *v).is_none()))
        .step_by(97)
        .take(4)
        .collect();
    assert!(!unsupported.is_empty(), "no unsupported case left to check");
    for case in unsupported {
        let model = suite_dir().join("node").join(&case.name).join("model.onnx");
        let out = Command::new(env!("CARGO_BIN_EXE_rbe-run")).arg(&model).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", case.name);
        assert!(!stderr.contains("panicked"), "{}: {stderr}", case.name);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{}: {stderr}", case.name);
    }
}
