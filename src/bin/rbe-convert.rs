//! `rbe-convert`: compress an ONNX model's weights with the RBE codec into an `.rbeonnx`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rbe::calibrate::Calibration;
use rbe::codec::EncodeParams;
use rbe::convert::{self, ContainerJob, Progress};

/// Compress an ONNX model's MatMul/Gemm, Gather and LayerNorm weights into an .rbeonnx container.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The input: an .onnx model, a llama.cpp .gguf (Llama family; a tokenizer.json is written
    /// beside the output), or with --unpack-graph / --emit an .rbeonnx container.
    input: PathBuf,
    /// The output file (for a .gguf input, an output ending in .onnx gets the plain graph with
    /// the exactly dequantized f32 weights instead of an encoded .rbeonnx).
    #[arg(short, long)]
    output: PathBuf,
    /// q8 (near-lossless), q4 (default, ~4.5 bits per weight) or q3.
    #[arg(long, default_value = "q4")]
    preset: String,
    /// Bits per residual code (2..=8), overriding the preset.
    #[arg(long)]
    bits: Option<u8>,
    /// Bit budget per weight, all bytes counted (presets: q8 8.5, q4 4.5, q3 3.5; none when
    /// --bits is given without it).
    #[arg(long)]
    max_bpw: Option<f64>,
    /// Group size along a row (16..=256, a multiple of 8), overriding the preset.
    #[arg(long)]
    group: Option<usize>,
    /// Tile size (32..=256), overriding the preset.
    #[arg(long)]
    block: Option<usize>,
    /// Sparse mode: keep at most K DCT coefficients per tile.
    #[arg(long)]
    k: Option<usize>,
    /// Sparse mode: keep coefficients above THRESHOLD x sigma.
    #[arg(long)]
    threshold: Option<f32>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Replace the output if it exists.
    #[arg(long)]
    force: bool,
    /// Instead of converting: unpack an .rbeonnx into a plain .onnx (data inlined) that any
    /// ONNX tool opens (its ai.rbe nodes need this runtime to run).
    #[arg(long)]
    unpack_graph: bool,
    /// Instead of converting: write an .rbeonnx as a standard ONNX file that onnxruntime runs
    /// (`onnx`: MatMulNBits / GatherBlockQuantized with our exact codes and scales), printing
    /// how each weight was written (and with --report, as JSON).
    #[arg(long, value_name = "FORMAT", value_parser = ["onnx"])]
    emit: Option<String>,
    /// Calibrate on this text: run the original model on its windows and encode every linear
    /// layer with error feedback under its inputs' statistics (GPTQ). Needs --tokenizer.
    #[arg(long, value_name = "TEXT")]
    calibrate: Option<PathBuf>,
    /// The model's tokenizer.json, for --calibrate.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Calibration tokens at most (the text's first ones).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    calib_tokens: usize,
    /// Tokens per calibration window (each fed from position 0; at most the model's context).
    /// Default: the tokenizer's truncation length if it sets one (sentence encoders: 128), else 512.
    #[arg(long, value_name = "N")]
    calib_window: Option<usize>,
    /// Damping of the calibration statistics (share of their mean diagonal; more is closer to
    /// round-to-nearest, less fits the calibration text harder).
    #[arg(long, default_value_t = rbe::codec::DEFAULT_DAMP, value_name = "X")]
    calib_damp: f64,
    /// zstd level for the container (1..=19).
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rbe-convert: {message}");
            ExitCode::from(2)
        }
    }
}

fn check_output(args: &Args) -> Result<(), String> {
    let same = match (args.input.canonicalize(), args.output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err("the output would overwrite the input".into());
    }
    if args.output.exists() && !args.force {
        return Err(format!("{} exists; pass --force to replace it", args.output.display()));
    }
    Ok(())
}

fn params(args: &Args) -> Result<EncodeParams, String> {
    let mut p = EncodeParams::preset(&args.preset)?;
    if let Some(bits) = args.bits {
        p.bits = bits;
        p.max_bpw = args.max_bpw;
    }
    if args.max_bpw.is_some() {
        p.max_bpw = args.max_bpw;
    }
    if let Some(group) = args.group {
        p.group = group;
    }
    if let Some(block) = args.block {
        p.block = block;
    }
    if args.k.is_some() {
        p.k = args.k;
    }
    if let Some(t) = args.threshold {
        p.threshold = t;
    }
    p.validate()?;
    Ok(p)
}

/// A progress bar (hidden until it has a length) in `template`'s style.
fn bar(template: &str) -> Result<ProgressBar, String> {
    Ok(ProgressBar::new(0).with_style(ProgressStyle::with_template(template).map_err(|e| e.to_string())?))
}

fn write_report(args: &Args, report: &rbe::convert::ConvertReport) -> Result<(), String> {
    print!("{}", report.table());
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
        rbe::atomic::write(path, json.as_bytes())?;
    }
    Ok(())
}

/// GGUF input: the graph (plain .onnx or encoded), then tokenizer.json beside it.
fn run_gguf(args: &Args, job: &ContainerJob) -> Result<(), String> {
    use rbe::gguf::convert::{convert_gguf, GgufTarget};
    let tokenizer_path = args.output.with_file_name("tokenizer.json");
    if tokenizer_path.exists() && !args.force {
        return Err(format!("{} exists; pass --force to replace it", tokenizer_path.display()));
    }
    let plain = args.output.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if plain && job.calibration.is_some() {
        return Err("--calibrate encodes weights; a plain .onnx output keeps them exact".into());
    }
    let target = if plain { GgufTarget::Onnx } else { GgufTarget::Container(job) };
    let done = convert_gguf(&args.input, target)?;
    rbe::atomic::write(&args.output, &done.bytes)?;
    print!("{}", done.sources);
    if let Some(report) = &done.report {
        write_report(args, report)?;
    }
    match done.tokenizer {
        Ok(Some(json)) => {
            rbe::atomic::write(&tokenizer_path, json.as_bytes())?;
            println!("wrote {}", tokenizer_path.display());
        }
        Ok(None) => eprintln!("rbe-convert: warning: the GGUF has no tokenizer; no tokenizer.json written"),
        Err(e) => eprintln!("rbe-convert: warning: no tokenizer.json written: {e}"),
    }
    Ok(())
}

fn run(args: Args) -> Result<(), String> {
    check_output(&args)?;
    if args.unpack_graph {
        let model = rbe::container::unpack_to_onnx(&args.input)?;
        return rbe::atomic::write(&args.output, &prost::Message::encode_to_vec(&model));
    }
    if args.emit.is_some() {
        let emitted = rbe::emit::emit_onnx(&args.input)?;
        rbe::atomic::write(&args.output, &prost::Message::encode_to_vec(&emitted.model))?;
        print!("{}", rbe::emit::table(&emitted.rows));
        if let Some(path) = &args.report {
            let json = serde_json::to_string_pretty(&emitted.rows).map_err(|e| e.to_string())?;
            rbe::atomic::write(path, json.as_bytes())?;
        }
        return Ok(());
    }
    let params = params(&args)?;
    let calib_bar = bar("calibrating {bar:40} {pos}/{len} windows ({elapsed})")?;
    let tick = || calib_bar.inc(1);
    let calibration = match (&args.calibrate, &args.tokenizer) {
        (Some(text), Some(tokenizer)) => {
            let mut c = Calibration::from_text(text, tokenizer, args.calib_window, args.calib_tokens, &tick)?;
            c.damp = args.calib_damp;
            calib_bar.set_length(c.windows.len() as u64);
            Some(c)
        }
        (Some(_), None) => return Err("--calibrate needs --tokenizer (the model's tokenizer.json)".into()),
        (None, Some(_)) => return Err("--tokenizer is used with --calibrate TEXT".into()),
        (None, None) => None,
    };
    let encode_bar = bar("encoding {bar:40} {pos}/{len} tensors ({elapsed})")?;
    let progress = Progress { on_plan: &|n| encode_bar.set_length(n as u64), tick: &|| encode_bar.inc(1) };
    let job = ContainerJob {
        params: &params,
        preset: &args.preset,
        zstd_level: args.zstd_level,
        progress: &progress,
        calibration: calibration.as_ref(),
    };
    if rbe::gguf::is_gguf(&args.input) {
        let done = run_gguf(&args, &job);
        calib_bar.finish_and_clear();
        encode_bar.finish_and_clear();
        return done;
    }
    let (bytes, report) =
        convert::convert_file_with(&args.input, &params, &args.preset, args.zstd_level, &progress, job.calibration)?;
    calib_bar.finish_and_clear();
    encode_bar.finish_and_clear();
    rbe::atomic::write(&args.output, &bytes)?;
    write_report(&args, &report)
}
