//! Every committed fixture, on every saved input, matches onnxruntime's outputs.

mod common;

use common::{cases, fixture, max_abs_diff, FIXTURES, LLAMA_FIXTURES};
use rbe_runtime::Session;

#[test]
fn every_fixture_matches_onnxruntime_references() {
    let mut checked = 0;
    for name in FIXTURES.iter().chain(LLAMA_FIXTURES) {
        let session = Session::load(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cases = cases(name);
        assert!(!cases.is_empty(), "{name} has no reference cases");
        for case in cases {
            let outputs = session
                .run(case.inputs.clone())
                .unwrap_or_else(|e| panic!("{name}/{}: {e}", case.name));
            for (out_name, expected) in &case.outputs {
                let (_, got) = outputs
                    .iter()
                    .find(|(n, _)| n == out_name)
                    .unwrap_or_else(|| panic!("{name}/{}: no output {out_name}", case.name));
                let diff = max_abs_diff(got, expected);
                assert!(diff <= 1e-4, "{name}/{}/{out_name}: max |diff| {diff}", case.name);
                checked += 1;
            }
        }
    }
    assert!(checked >= (FIXTURES.len() + LLAMA_FIXTURES.len()) * 4, "only {checked} outputs checked");
}

#[test]
fn session_is_send_and_sync_and_runs_concurrently() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Session>();
    let session = Session::load(&fixture("gpt2_legacy_op17")).unwrap();
    let case = cases("gpt2_legacy_op17").into_iter().next().unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| session.run(case.inputs.clone()).unwrap()))
            .collect();
        for h in handles {
            let out = h.join().unwrap();
            let expected = &case.outputs.iter().find(|(n, _)| n == "logits").unwrap().1;
            let got = &out.iter().find(|(n, _)| n == "logits").unwrap().1;
            assert!(max_abs_diff(got, expected) <= 1e-4);
        }
    });
}
