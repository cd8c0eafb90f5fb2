//! onnxruntime's contrib ops (`com.microsoft`, and SimplifiedLayerNormalization) against
//! onnxruntime's own outputs: every case under `tests/contrib/` (written by
//! tools/contrib_cases.py) must resolve, load, run through `Session` and match within the
//! case's tolerances. A failure or a panic names the case.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use common::suite::{manifest, run_case, supported, Outcome};
use rbe_runtime::ops::Registry;

fn suite_dir() -> PathBuf {
    common::root().join("tests/contrib")
}

#[test]
fn contrib_cases_match_onnxruntime() {
    let (suite, registry) = (suite_dir(), Registry::standard());
    let cases = manifest(&suite);
    assert!(cases.len() >= 40, "only {} cases in the manifest", cases.len());
    let mut problems = Vec::new();
    for case in &cases {
        let outcome = catch_unwind(AssertUnwindSafe(|| run_case(&suite, case)));
        match outcome {
            Ok(Outcome::Passed) if supported(&suite, case, &registry) => println!("{}: pass", case.name),
            Ok(Outcome::Passed) => problems.push(format!("{}: passed but is not supported?", case.name)),
            Ok(other) => problems.push(format!("{}: {other:?}", case.name)),
            Err(_) => problems.push(format!("{}: PANIC", case.name)),
        }
    }
    println!("contrib: {} of {} cases pass", cases.len() - problems.len(), cases.len());
    assert!(problems.is_empty(), "{} contrib cases fail:\n{}", problems.len(), problems.join("\n"));
}
