//! `rbe-convert`: compress an ONNX model's weights with the RBE codec into an `.rbeonnx`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rbe::calibrate::Calibration;
use rbe::codec::EncodeParams;
use rbe::convert::{self, ContainerJob, Progress};
use rbe::model_dir::{ModelDir, CONVERT_MODELS, SIDE_FILES};

/// Compress an ONNX model's MatMul/Gemm, Gather and LayerNorm weights into an .rbeonnx container.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The input: an .onnx model, a model directory (model.onnx beside tokenizer.json and its
    /// configs, as optimum exports it), a llama.cpp .gguf (Llama family; tokenizer.json and
    /// tokenizer_config.json are written beside the output), or with --unpack-graph / --emit an
    /// .rbeonnx container.
    input: PathBuf,
    /// The output file; for a directory input, the output directory (model.rbeonnx and a copy
    /// of the tokenizer and config files); for a .gguf input, an output ending in .onnx gets
    /// the plain graph with the exactly dequantized f32 weights instead of an encoded .rbeonnx.
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
    /// Bits per residual code of the embedding tables (weights only Gather nodes read), with no
    /// bit budget; the linear layers keep the preset's or --bits.
    #[arg(long, value_name = "BITS")]
    embedding_bits: Option<u8>,
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
    /// Calibrate on this text (repeat the flag for more texts, windows taken from each in
    /// turn): run the original model on its windows and encode every linear layer with error
    /// feedback under its inputs' statistics (GPTQ). Needs --tokenizer.
    #[arg(long, value_name = "TEXT")]
    calibrate: Vec<PathBuf>,
    /// The model's tokenizer.json, for --calibrate (default: the model directory's).
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
    /// Error feedback in act-order: each layer's inputs quantized in decreasing order of their
    /// second moment, group scales chosen before the feedback (the layout does not change).
    #[arg(long)]
    act_order: bool,
    /// Allocate code widths per tensor for the fewest bytes whose mean KL to the original,
    /// measured on held-out calibration windows, is at most X (nats). Needs --calibrate.
    #[arg(long, value_name = "X", conflicts_with_all = ["min_top1", "avg_bpw"])]
    target_kl: Option<f64>,
    /// Allocate code widths per tensor for the fewest bytes whose top-1 agreement with the
    /// original on held-out calibration windows is at least P. Needs --calibrate.
    #[arg(long, value_name = "P", conflicts_with = "avg_bpw")]
    min_top1: Option<f64>,
    /// Allocate code widths per tensor for the least predicted KL within B bits per weight on
    /// average (every stored byte counted; --max-bpw is the per-tensor cap). Needs --calibrate.
    #[arg(long, value_name = "B")]
    avg_bpw: Option<f64>,
    /// The code widths an allocation chooses from.
    #[arg(long, value_delimiter = ',', default_values_t = rbe::allocate::DEFAULT_WIDTHS)]
    widths: Vec<u8>,
    /// The group lengths an allocation chooses from, each with every width (default: the
    /// preset's, or --group).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    groups: Vec<usize>,
    /// zstd level for the container (1..=19).
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,
}

fn main() -> ExitCode {
    rbe::malloc::keep_freed_memory();
    match convert_input(Args::parse()) {
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
    p.table_bits = args.embedding_bits;
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

/// The allocation target the flags ask for, if any.
fn goal<'a>(
    args: &Args,
    group: usize,
    on_step: &'a (dyn Fn(&rbe::allocate::Step) + Sync),
) -> Result<Option<rbe::allocate::Goal<'a>>, String> {
    use rbe::allocate::{Goal, Target};
    let target = match (args.target_kl, args.min_top1, args.avg_bpw) {
        (Some(x), _, _) => Target::Kl(x),
        (_, Some(p), _) => Target::Top1(p),
        (_, _, Some(b)) => Target::Bpw(b),
        _ if args.groups.is_empty() => return Ok(None),
        _ => return Err("--groups is for an allocation (--target-kl, --min-top1 or --avg-bpw)".into()),
    };
    let groups = if args.groups.is_empty() { vec![group] } else { args.groups.clone() };
    let goal = Goal { target, widths: args.widths.clone(), groups, on_step };
    goal.validate()?;
    Ok(Some(goal))
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

/// Writes a side file `name` beside the output (when the conversion made one).
fn write_beside(args: &Args, name: &str, text: Result<Option<String>, String>) -> Result<(), String> {
    let path = args.output.with_file_name(name);
    match text {
        Ok(Some(text)) => {
            rbe::atomic::write(&path, text.as_bytes())?;
            println!("wrote {}", path.display());
        }
        Ok(None) => eprintln!("rbe-convert: warning: the GGUF has nothing for {name}; not written"),
        Err(e) => eprintln!("rbe-convert: warning: {name} not written: {e}"),
    }
    Ok(())
}

/// GGUF input: the graph (plain .onnx or encoded), then tokenizer.json and
/// tokenizer_config.json beside it.
fn run_gguf(args: &Args, job: &ContainerJob) -> Result<(), String> {
    use rbe::gguf::convert::{convert_gguf, GgufTarget};
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        let path = args.output.with_file_name(name);
        if path.exists() && !args.force {
            return Err(format!("{} exists; pass --force to replace it", path.display()));
        }
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
    write_beside(args, "tokenizer.json", done.tokenizer)?;
    write_beside(args, "tokenizer_config.json", done.tokenizer_config)
}

/// A model directory input: converts its model into OUTPUT/model.rbeonnx; returns the side
/// files to copy there afterwards (none when OUTPUT is the input directory).
fn open_dir(args: &mut Args) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    if args.unpack_graph || args.emit.is_some() {
        return Err("--unpack-graph and --emit take an .rbeonnx file, not a directory".into());
    }
    if args.output.is_file() {
        return Err(format!("{} is a file; for a directory input the output is a directory", args.output.display()));
    }
    let dir = ModelDir::open(&args.input, CONVERT_MODELS)?;
    std::fs::create_dir_all(&args.output).map_err(|e| format!("cannot create {}: {e}", args.output.display()))?;
    let same = args.input.canonicalize().ok() == args.output.canonicalize().ok();
    let copies: Vec<(PathBuf, PathBuf)> = if same {
        Vec::new()
    } else {
        SIDE_FILES.iter().map(|n| (dir.dir.join(n), args.output.join(n))).filter(|(from, _)| from.is_file()).collect()
    };
    if let Some((_, to)) = copies.iter().find(|(_, to)| to.exists() && !args.force) {
        return Err(format!("{} exists; pass --force to replace it", to.display()));
    }
    if args.tokenizer.is_none() && !args.calibrate.is_empty() {
        args.tokenizer = dir.tokenizer.clone();
    }
    println!("model {}", dir.model.display());
    args.output = args.output.join("model.rbeonnx");
    args.input = dir.model;
    Ok(copies)
}

fn copy_side_files(copies: &[(PathBuf, PathBuf)]) -> Result<(), String> {
    for (from, to) in copies {
        let bytes = std::fs::read(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        rbe::atomic::write(to, &bytes)?;
    }
    if !copies.is_empty() {
        let names: Vec<String> = copies.iter().filter_map(|(_, to)| to.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
        println!("copied {}", names.join(", "));
    }
    Ok(())
}

/// Converts the input; a model directory's side files are copied once its model is written.
fn convert_input(mut args: Args) -> Result<(), String> {
    let copies = if args.input.is_dir() { open_dir(&mut args)? } else { Vec::new() };
    run(args)?;
    copy_side_files(&copies)
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
    let on_step = |s: &rbe::allocate::Step| {
        calib_bar.suspend(|| {
            eprintln!(
                "allocation {:<6} {:<48} predicted KL {:>6}  bpw {:.3}  measured KL {:.4}  top-1 {:.4}",
                s.stage,
                s.what,
                if s.predicted_kl.is_nan() { "-".to_string() } else { format!("{:.4}", s.predicted_kl) },
                s.bits_per_weight,
                s.measured.kl,
                s.measured.top1
            )
        })
    };
    let goal = goal(&args, params.group, &on_step)?;
    if args.act_order && args.calibrate.is_empty() {
        return Err("--act-order orders the error feedback of --calibrate TEXT".into());
    }
    if goal.is_some() && args.embedding_bits.is_some() {
        return Err("an allocation chooses every width itself; drop --embedding-bits".into());
    }
    if goal.is_some() && args.calibrate.is_empty() {
        return Err("--target-kl, --min-top1 and --avg-bpw measure the model on --calibrate TEXT".into());
    }
    let calibration = match (args.calibrate.is_empty(), &args.tokenizer) {
        (false, Some(tokenizer)) => {
            let mut c = Calibration::from_texts(&args.calibrate, tokenizer, args.calib_window, args.calib_tokens, &tick)?;
            c.damp = args.calib_damp;
            c.act_order = args.act_order;
            c.goal = goal;
            calib_bar.set_length(c.windows.len() as u64);
            Some(c)
        }
        (false, None) => return Err("--calibrate needs --tokenizer (the model's tokenizer.json)".into()),
        (true, Some(_)) => return Err("--tokenizer is used with --calibrate TEXT".into()),
        (true, None) => None,
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
    write_report(&args, &report)?;
    match &report.allocation {
        Some(a) if !a.met => Err(format!(
            "the allocation did not meet {} on the held-out windows (the file is written; see the report)",
            a.target
        )),
        _ => Ok(()),
    }
}
