//! Hugging Face style model directories: `rbe-convert DIR -o OUT` converts DIR's model.onnx
//! into OUT/model.rbeonnx beside copies of its tokenizer and configs, and `rbe-run DIR` takes
//! the tokenizer, the end-of-sequence tokens and the chat template from there.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixture, numbered_word_tokenizer};

/// A directory as optimum exports it: the past-key-values fixture, a word-level tokenizer
/// (word `tN` is id N), a config, and a tokenizer config with a chat template.
fn export_dir(dir: &Path, generation_config: Option<&str>) {
    std::fs::copy(fixture("gpt2_optimum_past"), dir.join("model.onnx")).unwrap();
    numbered_word_tokenizer(dir, 1000);
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2", "eos_token_id": 999}"#).unwrap();
    if let Some(text) = generation_config {
        std::fs::write(dir.join("generation_config.json"), text).unwrap();
    }
    let template = "{% for m in messages %}t1 {{ m.content.strip() }} t2 {% endfor %}{% if add_generation_prompt %}t3{% endif %}";
    let config = serde_json::json!({"chat_template": template, "eos_token": "t998"});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
}

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

fn rbe_run(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_rbe-run"), args)
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The words generated after the prompt (greedy).
fn generated(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![dir.to_str().unwrap(), "--prompt", "t464 t268 t758", "--max-new-tokens", "6"];
    args.extend_from_slice(extra);
    let text = stdout(&rbe_run(&args));
    text.strip_prefix("t464 t268 t758").expect("the prompt is echoed").split_whitespace().map(str::to_string).collect()
}

#[test]
fn convert_dir_writes_the_model_and_copies_the_side_files() {
    let (src, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    export_dir(src.path(), Some(r#"{"eos_token_id": 999}"#));
    let target = out.path().join("q4");
    let convert = |extra: &[&str]| {
        let mut args = vec![src.path().to_str().unwrap(), "-o", target.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(env!("CARGO_BIN_EXE_rbe-convert"), &args)
    };
    let first = convert(&[]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    for name in ["model.rbeonnx", "tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json"] {
        assert!(target.join(name).is_file(), "{name} missing");
    }
    assert_eq!(std::fs::read(src.path().join("tokenizer.json")).unwrap(), std::fs::read(target.join("tokenizer.json")).unwrap());
    let again = convert(&[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(convert(&["--force"]).status.success());
    // The converted directory runs like the original one, without --tokenizer.
    assert_eq!(generated(&target, &[]).len(), 6);
}

#[test]
fn end_tokens_come_from_generation_config_then_config() {
    let dir = tempfile::tempdir().unwrap();
    export_dir(dir.path(), None);
    let free = generated(dir.path(), &[]);
    assert_eq!(free.len(), 6, "{free:?}");
    // generation_config.json's list stops at the first greedy token.
    let first: u32 = free[0].trim_start_matches('t').parse().unwrap();
    std::fs::write(dir.path().join("generation_config.json"), format!(r#"{{"eos_token_id": [997, {first}]}}"#)).unwrap();
    assert!(generated(dir.path(), &[]).is_empty());
    // Without it, config.json's id does.
    std::fs::remove_file(dir.path().join("generation_config.json")).unwrap();
    std::fs::write(dir.path().join("config.json"), format!(r#"{{"eos_token_id": {first}}}"#)).unwrap();
    assert!(generated(dir.path(), &[]).is_empty());
    // And tokenizer_config.json's eos_token by its text.
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let config = serde_json::json!({"eos_token": {"content": free[0], "special": true}});
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    assert!(generated(dir.path(), &[]).is_empty());
}

#[test]
fn chat_renders_the_template() {
    let dir = tempfile::tempdir().unwrap();
    export_dir(dir.path(), None);
    let path = dir.path().to_str().unwrap();
    // "t1 t464 t268 t2 t3": five prompt tokens, the template's own around the user's two.
    let out = rbe_run(&[path, "--chat", "--prompt", "  t464 t268 ", "--max-new-tokens", "3"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("prompt: 5 tokens"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out).split_whitespace().count(), 3);
    let with_system = rbe_run(&[path, "--chat", "--system", "t7 t8", "--prompt", "t464", "--max-new-tokens", "1"]);
    assert!(String::from_utf8_lossy(&with_system.stderr).contains("prompt: 8 tokens"));

    // Two turns from stdin: the second prompt holds the first turn and its reply.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbe-run"))
        .args([path, "--chat", "--max-new-tokens", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"t5\n\nt6\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prompt: 4 tokens") && err.contains("prompt: 11 tokens"), "{err}");
}

#[test]
fn chat_without_a_template_and_ambiguous_dirs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    export_dir(dir.path(), None);
    std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
    let path = dir.path().to_str().unwrap();
    let out = rbe_run(&[path, "--chat", "--prompt", "t1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chat template"));

    std::fs::rename(dir.path().join("model.onnx"), dir.path().join("a.onnx")).unwrap();
    std::fs::copy(dir.path().join("a.onnx"), dir.path().join("b.onnx")).unwrap();
    let out = rbe_run(&[path, "--input-ids", "1,2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a.onnx") && err.contains("b.onnx"), "{err}");
    std::fs::remove_file(dir.path().join("b.onnx")).unwrap();
    assert!(rbe_run(&[path, "--input-ids", "1,2"]).status.success(), "the only model is taken");

    let empty = tempfile::tempdir().unwrap();
    let out = rbe_run(&[empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no model file"));

    std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
    let out = rbe_run(&[path, "--input-ids", "1,2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.json"));
}
