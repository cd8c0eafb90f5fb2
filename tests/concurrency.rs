//! One `Session` shared by many threads: every run gives exactly what the same run gives
//! alone, for float and compressed models, and generation is undisturbed by batches running
//! beside it.

mod common;

use std::sync::Arc;

use common::{fixture, numbered_word_tokenizer};
use rbe::codec::EncodeParams;
use rbe::convert::{convert_file, Progress};
use rbe::feeds::token_feeds;
use rbe::generate::{generate, load_tokenizer, GenerateOptions};
use rbe_runtime::{Session, Tensor};

const THREADS: usize = 8;

/// The fixture converted at q4, loaded.
fn converted_session(name: &str) -> Session {
    let dir = tempfile::tempdir().unwrap();
    let params = EncodeParams::preset("q4").unwrap();
    let (bytes, _) = convert_file(&fixture(name), &params, "q4", 3, &Progress::none()).unwrap();
    let path = dir.path().join(format!("{name}.q4.rbeonnx"));
    std::fs::write(&path, bytes).unwrap();
    Session::load(&path).unwrap()
}

/// Thread `t`'s input: its own length and token ids.
fn feeds(session: &Session, t: usize) -> Vec<(String, Tensor)> {
    let ids: Vec<i64> = (0..3 + 5 * t).map(|i| ((i * 37 + t * 101) % 1000) as i64).collect();
    token_feeds(session.inputs(), &ids, Vec::new()).unwrap()
}

/// Runs every thread's input alone, then all of them at once (each three times), and asks for
/// bit-identical outputs.
fn parallel_runs_equal_serial(session: Session) {
    let session = Arc::new(session);
    let serial: Vec<_> = (0..THREADS).map(|t| session.run(feeds(&session, t)).unwrap()).collect();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let session = Arc::clone(&session);
            std::thread::spawn(move || (0..3).map(|_| session.run(feeds(&session, t)).unwrap()).collect::<Vec<_>>())
        })
        .collect();
    for (t, handle) in handles.into_iter().enumerate() {
        for outputs in handle.join().expect("a run thread panicked") {
            assert_eq!(outputs, serial[t], "thread {t}: outputs differ from its serial run");
        }
    }
}

#[test]
fn eight_threads_on_one_float_session_match_serial_runs() {
    parallel_runs_equal_serial(Session::load(&fixture("gpt2_optimum_past")).unwrap());
}

#[test]
fn eight_threads_on_one_compressed_session_match_serial_runs() {
    parallel_runs_equal_serial(converted_session("gpt2_optimum_past"));
}

#[test]
fn generation_beside_batches_matches_generation_alone() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = load_tokenizer(&numbered_word_tokenizer(dir.path(), 1000)).unwrap();
    let session = Arc::new(converted_session("gpt2_optimum_past"));
    let options = GenerateOptions::greedy(16);
    let prompt = "t464 t268 t758 t318";
    let alone = generate(&session, &tokenizer, prompt, &options, &mut |_| {}).unwrap().0;
    // Thread 3's input twice over, as a batch of 2 (the empty past too).
    let batch = |session: &Session| -> Vec<(String, Tensor)> {
        let twice = |t: &Tensor| match t {
            Tensor::I64(a) => Tensor::I64(ndarray::concatenate(ndarray::Axis(0), &[a.view(), a.view()]).unwrap().into_shared()),
            Tensor::F32(a) => Tensor::F32(ndarray::concatenate(ndarray::Axis(0), &[a.view(), a.view()]).unwrap().into_shared()),
            other => panic!("unexpected input dtype {}", other.dtype()),
        };
        feeds(session, 3).iter().map(|(name, t)| (name.clone(), twice(t))).collect()
    };
    let expected = session.run(batch(&session)).unwrap();
    let runner = {
        let session = Arc::clone(&session);
        std::thread::spawn(move || (0..6).map(|_| session.run(batch(&session)).unwrap()).collect::<Vec<_>>())
    };
    let beside = generate(&session, &tokenizer, prompt, &options, &mut |_| {}).unwrap().0;
    for outputs in runner.join().expect("the batch thread panicked") {
        assert_eq!(outputs, expected, "a batch beside generation differs from the batch alone");
    }
    assert_eq!(beside, alone, "generation beside batches differs from generation alone");
}
