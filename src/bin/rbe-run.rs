//! `rbe-run`: run an `.onnx` or `.rbeonnx` model on given inputs and show its outputs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rbe::chat::ChatTemplate;
use rbe::generate::{Conversation, GenerateOptions, GenerationStats};
use rbe::model_dir::{ModelDir, RUN_MODELS};
use rbe::{feeds, generate, logits, npy};
use rbe_runtime::kernels::qmm::Activations;
use rbe_runtime::{Session, SessionOptions, Tensor};
use serde::Serialize;

/// Run an ONNX or RBE model on given inputs, print its outputs and the top next tokens.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The model: an .onnx file, an .rbeonnx container, or a model directory (model.rbeonnx or
    /// model.onnx beside tokenizer.json, config.json, generation_config.json,
    /// tokenizer_config.json: tokenizer, end tokens and chat template are taken from there).
    model: PathBuf,
    /// Token ids of one sequence (batch 1), e.g. 464,2068,7586. Attention mask, position ids
    /// and an empty past are derived when the model takes them.
    #[arg(long)]
    input_ids: Option<String>,
    /// A graph input from a .npy file: NAME=@file.npy (repeatable).
    #[arg(long = "input", value_name = "NAME=@FILE")]
    inputs: Vec<String>,
    /// How many next-token candidates to show for logits.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write every output as DIR/<output name>.npy.
    #[arg(long, value_name = "DIR")]
    save_outputs: Option<PathBuf>,
    /// Generate text after this prompt (needs --tokenizer); streams tokens as they come.
    #[arg(long)]
    prompt: Option<String>,
    /// The model's tokenizer.json (for --prompt; default: the model directory's).
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Chat with an instruct model: the prompt (or, without --prompt, each line read from
    /// stdin) is a user turn, rendered with the model's chat template.
    #[arg(long)]
    chat: bool,
    /// With --chat: a system message opening the conversation.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// With --chat: the Jinja chat template to use (default: the model directory's).
    #[arg(long, value_name = "FILE", requires = "chat")]
    chat_template: Option<PathBuf>,
    /// How many tokens to generate after the prompt.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 (the default) is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Sample among the K most likely tokens only (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Seed for sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Time the model: one warm-up run, then N runs on the same inputs; prints how long the
    /// model took to load, and the median and minimum latency of one run.
    #[arg(long, value_name = "N")]
    bench: Option<usize>,
    /// With --bench: then N more runs timing every node's kernel, and a table of time per op
    /// type.
    #[arg(long, requires = "bench")]
    profile: bool,
    /// Int8 activations in compressed matmuls: every token's GEMV, and prompts' GEMMs on
    /// 4-bit codes (faster, not bit-exact; like onnxruntime's MatMulNBits accuracy_level 4).
    #[arg(long)]
    int8_activations: bool,
    /// Run every node as the file spells it (no fusion passes).
    #[arg(long)]
    no_fuse: bool,
}

#[derive(Serialize)]
struct OutputSummary {
    name: String,
    dtype: String,
    shape: Vec<usize>,
}

#[derive(Serialize)]
struct Report {
    outputs: Vec<OutputSummary>,
    /// Per batch row, the most likely next tokens (when the model outputs logits).
    next_tokens: Option<Vec<Vec<logits::Candidate>>>,
}

fn main() -> ExitCode {
    rbe::malloc::keep_freed_memory();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rbe-run: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let options = SessionOptions {
        fuse: !args.no_fuse,
        activations: if args.int8_activations { Activations::Int8 } else { Activations::Exact },
    };
    let dir = if args.model.is_dir() { Some(ModelDir::open(&args.model, RUN_MODELS)?) } else { None };
    let model = dir.as_ref().map_or(&args.model, |d| &d.model);
    if dir.is_some() {
        eprintln!("rbe-run: model {}", model.display());
    }
    let loading = std::time::Instant::now();
    let session = Session::load_with(model, &options).map_err(|e| e.to_string())?;
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    rbe::malloc::keep_run_buffers();
    if args.chat || args.prompt.is_some() {
        return run_text(&session, dir.as_ref(), &args);
    }
    let extra = feeds::read_input_args(&args.inputs)?;
    let inputs = match &args.input_ids {
        Some(text) => feeds::token_feeds(session.inputs(), &feeds::parse_token_ids(text)?, extra)?,
        None => extra,
    };
    if let Some(n) = args.bench {
        let (median, min) = rbe::bench::time_runs(n, || session.run(inputs.clone()).map(drop))
            .map_err(|e| e.to_string())?;
        println!("isa: {}", rbe_runtime::kernels::isa::Isa::current());
        println!("load {load_ms:.1} ms; run: median {median:.2} ms, min {min:.2} ms ({n} runs)");
        if args.profile {
            print!("{}", rbe::bench::profile_by_op(&session, &inputs, n)?);
        }
        return Ok(());
    }
    let outputs = session.run(inputs).map_err(|e| e.to_string())?;
    if let Some(dir) = &args.save_outputs {
        save_outputs(dir, &outputs)?;
    }
    let report = Report {
        outputs: outputs
            .iter()
            .map(|(name, t)| OutputSummary {
                name: name.clone(),
                dtype: t.dtype().to_string(),
                shape: t.shape().to_vec(),
            })
            .collect(),
        next_tokens: find_logits(&outputs).map(|t| logits::top_k(t, args.top)).transpose()?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        print_human(&report);
    }
    Ok(())
}

/// The chat template: --chat-template's file, else the model directory's.
fn chat_template(dir: Option<&ModelDir>, args: &Args) -> Result<ChatTemplate, String> {
    if let Some(path) = &args.chat_template {
        let source = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let eos = dir.and_then(|d| d.eos_token.clone()).unwrap_or_default();
        return Ok(ChatTemplate::new(&source, "", &eos));
    }
    dir.and_then(|d| d.chat_template.clone()).ok_or_else(|| {
        "--chat needs a chat template: a model directory with one (tokenizer_config.json's chat_template or chat_template.jinja), or --chat-template FILE".to_string()
    })
}

/// Generation from text: --prompt, or a --chat conversation.
fn run_text(session: &Session, dir: Option<&ModelDir>, args: &Args) -> Result<(), String> {
    use std::io::Write;
    let path = args.tokenizer.as_ref().or(dir.and_then(|d| d.tokenizer.as_ref())).ok_or(
        "generating text needs a tokenizer: --tokenizer tokenizer.json, or a model directory that has one",
    )?;
    let tokenizer = generate::load_tokenizer(path)?;
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(format!("--temperature must be >= 0, got {}", args.temperature));
    }
    let mut stop_ids = dir.map(|d| d.eos_token_ids.clone()).unwrap_or_default();
    stop_ids.extend(dir.and_then(|d| d.eos_token.as_deref()).and_then(|t| tokenizer.token_to_id(t)));
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling: generate::SamplingOptions { temperature: args.temperature, top_k: args.top_k, seed: args.seed },
        stop_ids,
    };
    if generate::Stepper::new(session)?.mode() == generate::StepMode::Recompute {
        eprintln!("rbe-run: this export has no past_key_values inputs: every step recomputes the whole sequence");
    }
    let mut stdout = std::io::stdout();
    let mut emit = |piece: &str| {
        print!("{piece}");
        let _ = stdout.flush();
    };
    if !args.chat {
        let prompt = args.prompt.as_deref().unwrap_or_default();
        print!("{prompt}");
        let (_, stats) = generate::generate(session, &tokenizer, prompt, &options, &mut emit)?;
        println!();
        print_stats(&stats);
        return Ok(());
    }
    let template = chat_template(dir, args)?;
    let mut conversation = Conversation::new(&template, args.system.as_deref());
    if let Some(prompt) = &args.prompt {
        let stats = conversation.reply(session, &tokenizer, prompt, &options, &mut emit)?;
        println!();
        print_stats(&stats);
        return Ok(());
    }
    eprintln!("rbe-run: chat: one message per line, end with Ctrl-D");
    for line in std::io::stdin().lines() {
        let line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let stats = conversation.reply(session, &tokenizer, &line, &options, &mut emit)?;
        println!();
        print_stats(&stats);
    }
    Ok(())
}

fn print_stats(stats: &GenerationStats) {
    eprintln!(
        "prompt: {} tokens in {:.1} ms ({:.1} tokens/s); generated: {} tokens, {:.2} tokens/s{}",
        stats.prompt_tokens,
        stats.prompt_ms,
        stats.prompt_tokens_per_s(),
        stats.new_tokens,
        stats.generate_tokens_per_s(),
        if stats.kv_cache { " (KV cache)" } else { " (recomputing, no KV cache)" }
    );
}

/// The output called `logits`, else the first rank-3 float output.
fn find_logits(outputs: &[(String, Tensor)]) -> Option<&Tensor> {
    outputs
        .iter()
        .find(|(n, _)| n == "logits")
        .or_else(|| outputs.iter().find(|(_, t)| t.rank() == 3 && t.as_f32().is_ok()))
        .map(|(_, t)| t)
}

fn save_outputs(dir: &std::path::Path, outputs: &[(String, Tensor)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, tensor) in outputs {
        let file = name.replace(['/', '\\'], "_");
        npy::write(&dir.join(format!("{file}.npy")), tensor)?;
    }
    Ok(())
}

fn print_human(report: &Report) {
    for o in &report.outputs {
        println!("{} {} {:?}", o.name, o.dtype, o.shape);
    }
    if let Some(rows) = &report.next_tokens {
        for (b, row) in rows.iter().enumerate() {
            println!("next token (batch {b}):");
            for c in row {
                println!("  {:>7}  {:.4}", c.token, c.prob);
            }
        }
    }
}
