//! `rbe-run`: run an `.onnx` or `.rbeonnx` model on given inputs and show its outputs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rbe::{feeds, generate, logits, npy};
use rbe_runtime::kernels::qmm::Activations;
use rbe_runtime::{Session, SessionOptions, Tensor};
use serde::Serialize;

/// Run an ONNX or RBE model on given inputs, print its outputs and the top next tokens.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The model: an .onnx file or an .rbeonnx container.
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
    /// The model's tokenizer.json (for --prompt).
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
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
    /// Time the model: one warm-up run, then N runs on the same inputs; prints the median and
    /// minimum latency of one run (model load excluded).
    #[arg(long, value_name = "N")]
    bench: Option<usize>,
    /// With --bench: then N more runs timing every node's kernel, and a table of time per op
    /// type.
    #[arg(long, requires = "bench")]
    profile: bool,
    /// Int8 activations in compressed matmuls of one token (faster, not bit-exact; like
    /// onnxruntime's MatMulNBits accuracy_level 4).
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
    let session = Session::load_with(&args.model, &options).map_err(|e| e.to_string())?;
    if let Some(prompt) = &args.prompt {
        return run_prompt(&session, prompt, &args);
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
        println!("median {median:.2} ms, min {min:.2} ms ({n} runs)");
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

fn run_prompt(session: &Session, prompt: &str, args: &Args) -> Result<(), String> {
    use std::io::Write;
    let path = args.tokenizer.as_ref().ok_or("--prompt needs --tokenizer tokenizer.json")?;
    let tokenizer = generate::load_tokenizer(path)?;
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(format!("--temperature must be >= 0, got {}", args.temperature));
    }
    let sampling = generate::SamplingOptions { temperature: args.temperature, top_k: args.top_k, seed: args.seed };
    if generate::Stepper::new(session)?.mode() == generate::StepMode::Recompute {
        eprintln!("rbe-run: this export has no past_key_values inputs: every step recomputes the whole sequence");
    }
    let mut stdout = std::io::stdout();
    print!("{prompt}");
    let mut emit = |piece: &str| {
        print!("{piece}");
        let _ = stdout.flush();
    };
    let (_, stats) = generate::generate(session, &tokenizer, prompt, args.max_new_tokens, &sampling, &mut emit)?;
    println!();
    eprintln!(
        "prompt: {} tokens in {:.1} ms ({:.1} tokens/s); generated: {} tokens, {:.2} tokens/s{}",
        stats.prompt_tokens,
        stats.prompt_ms,
        stats.prompt_tokens_per_s(),
        stats.new_tokens,
        stats.generate_tokens_per_s(),
        if stats.kv_cache { " (KV cache)" } else { " (recomputing, no KV cache)" }
    );
    Ok(())
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
