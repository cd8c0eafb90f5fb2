//! `snapshot-diff`: run an original and a converted model on the same inputs and report how
//! far apart their outputs are; check limits and golden snapshots; write an HTML report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rbe::diff::golden::{self, Tolerance};
use rbe::diff::html::{self, ConvertSummary};
use rbe::diff::thresholds::{parse_fraction, Check, Thresholds};
use rbe::diff::{Job, Report, Source};
use rbe_runtime::kernels::qmm::Activations;
use serde::Serialize;

/// Compare a converted model with its original: per-output max |diff|, RMSE, relative RMSE,
/// cosine; top-1 agreement and KL for logits; perplexity on a text.
///
/// Exit codes: 0 all limits and snapshot checks hold, 1 one failed, 2 bad input,
/// 130 interrupted (partial figures are still reported).
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The original model (.onnx).
    original: Option<PathBuf>,
    /// The converted model (.rbeonnx).
    converted: Option<PathBuf>,
    /// Inputs: a folder of saved tensors DIR/<input name>.npy (e.g.
    /// golden/refs/gpt2_legacy_op17/b1_s64/inputs).
    #[arg(long, value_name = "DIR")]
    inputs: Option<PathBuf>,
    /// Inputs: a UTF-8 text, tokenized with --tokenizer and cut into non-overlapping windows;
    /// adds each model's perplexity.
    #[arg(long, value_name = "FILE")]
    text: Option<PathBuf>,
    /// The model's tokenizer.json, for --text.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Tokens per window: default 512 for --text (pass the model's context if it is smaller),
    /// 64 for the default random sequences.
    #[arg(long)]
    window: Option<usize>,
    /// Without --inputs or --text: this many seeded random token sequences.
    #[arg(long, default_value_t = 4)]
    sequences: usize,
    /// Seed of the random token sequences.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Vocabulary size for random tokens (default: read from the model's logits).
    #[arg(long)]
    vocab: Option<usize>,
    /// onnxruntime outputs for --inputs (DIR/<output name>.npy): also compares each model
    /// with onnxruntime.
    #[arg(long, value_name = "DIR")]
    reference: Option<PathBuf>,
    /// Fail unless top-1 agreement of the logits is at least this (0.99 or 99%).
    #[arg(long, value_name = "FRACTION")]
    min_top1: Option<String>,
    /// Fail if mean KL(original || converted) of the logits exceeds this (nats).
    #[arg(long, value_name = "NATS")]
    max_kl: Option<f64>,
    /// Fail if any output's relative RMSE exceeds this.
    #[arg(long, value_name = "X")]
    max_rel_rmse: Option<f64>,
    /// Fail if perplexity grows by more than this (0.02 or 2%); needs --text.
    #[arg(long, value_name = "FRACTION")]
    max_ppl_increase: Option<String>,
    /// Write the metrics, rounded to 4 significant digits, as a golden snapshot.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Fail if any metric is worse than in this snapshot by more than the tolerance.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// Relative tolerance of --check, on each metric's distance from ideal (5% or 0.05).
    #[arg(long, default_value = "5%", value_name = "FRACTION")]
    tolerance: String,
    /// Absolute floor of the --check tolerance.
    #[arg(long, default_value_t = 1e-6, value_name = "X")]
    tolerance_abs: f64,
    /// Print the report (with the checks) as JSON.
    #[arg(long)]
    json: bool,
    /// Write a self-contained HTML report.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// An rbe-convert --report JSON, drawn in the HTML report (repeatable).
    #[arg(long, value_name = "FILE")]
    convert_report: Vec<PathBuf>,
    /// The run's name in reports (default: the converted model's file stem).
    #[arg(long)]
    label: Option<String>,
    /// The run's series in the HTML report's rate–distortion plot (e.g. "RBE calibrated").
    #[arg(long)]
    series: Option<String>,
    /// Run the converted model's compressed matmuls with int8 activations (as `rbe-run
    /// --int8-activations`), to measure what that costs in accuracy.
    #[arg(long)]
    int8_activations: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Combine saved runs (--save or --json output) and converter reports into one HTML page.
    Report {
        /// Runs: JSON files written by --save or printed by --json.
        runs: Vec<PathBuf>,
        /// An rbe-convert --report JSON (repeatable).
        #[arg(long, value_name = "FILE")]
        convert_report: Vec<PathBuf>,
        /// The HTML file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the rate–distortion plot of the runs (two or more, with their rate) as an SVG file.
        #[arg(long, value_name = "FILE")]
        rd_svg: Option<PathBuf>,
    },
}

/// How a run ended.
enum Outcome {
    Pass,
    Fail,
    Interrupted,
}

fn main() -> ExitCode {
    rbe::malloc::keep_freed_memory();
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if e.use_stderr() => {
            // Clap's first paragraph says what is wrong; the usage that follows is in --help.
            let text = e.render().to_string();
            let lines: Vec<&str> = text.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
            eprintln!("snapshot-diff: {} (see --help)", lines.join(" ").trim_start_matches("error: "));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let result = match &args.command {
        Some(Command::Report { runs, convert_report, output, rd_svg }) => {
            report(runs, convert_report, output, rd_svg.as_deref())
        }
        None => diff(&args),
    };
    match result {
        Ok(Outcome::Pass) => ExitCode::SUCCESS,
        Ok(Outcome::Fail) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(message) => {
            eprintln!("snapshot-diff: {message}");
            ExitCode::from(2)
        }
    }
}

fn report(runs: &[PathBuf], convert_reports: &[PathBuf], output: &Path, rd_svg: Option<&Path>) -> Result<Outcome, String> {
    if runs.is_empty() && convert_reports.is_empty() {
        return Err("report needs at least one run JSON or --convert-report".into());
    }
    let reports = runs.iter().map(|p| golden::load(p)).collect::<Result<Vec<_>, _>>()?;
    if let Some(path) = rd_svg {
        let plot = html::rate_distortion(&reports);
        if plot.is_empty() {
            return Err("--rd-svg needs two or more runs that know their rate (JSON of snapshot-diff runs on .onnx originals)".into());
        }
        rbe::atomic::write(path, rbe::diff::rd_plot::standalone(&plot).as_bytes())?;
    }
    write_html(output, &reports, convert_reports)?;
    Ok(Outcome::Pass)
}

fn write_html(path: &Path, reports: &[Report], convert_reports: &[PathBuf]) -> Result<(), String> {
    let conversions =
        convert_reports.iter().map(|p| ConvertSummary::load(p)).collect::<Result<Vec<_>, _>>()?;
    rbe::atomic::write(path, html::render(reports, &conversions).as_bytes())
}

fn job(args: &Args) -> Result<Job, String> {
    let (Some(original), Some(converted)) = (&args.original, &args.converted) else {
        return Err("usage: snapshot-diff ORIGINAL.onnx CONVERTED.rbeonnx [options] (see --help)".into());
    };
    if args.vocab.is_some() && (args.inputs.is_some() || args.text.is_some()) {
        return Err("--vocab applies only to the default random sequences".into());
    }
    let source = match (&args.inputs, &args.text, &args.tokenizer) {
        (Some(_), Some(_), _) => return Err("--inputs and --text are alternatives: pass one".into()),
        (Some(dir), None, None) => Source::Dir(dir.clone()),
        (None, Some(text), Some(tokenizer)) => Source::Text {
            text: text.clone(),
            tokenizer: tokenizer.clone(),
            window: args.window.unwrap_or(512),
        },
        (_, None, Some(_)) | (None, Some(_), None) => {
            return Err("--text and --tokenizer go together (and not with --inputs)".into())
        }
        (None, None, None) => Source::Random {
            sequences: args.sequences,
            len: args.window.unwrap_or(64),
            seed: args.seed,
            vocab: args.vocab,
        },
    };
    if args.window == Some(0) {
        return Err("--window must be at least 1".into());
    }
    Ok(Job {
        original: original.clone(),
        converted: converted.clone(),
        source,
        reference: args.reference.clone(),
        label: args.label.clone(),
        activations: if args.int8_activations { Activations::Int8 } else { Activations::Exact },
        series: args.series.clone(),
    })
}

fn thresholds(args: &Args) -> Result<Thresholds, String> {
    let fraction = |flag: &str, v: &Option<String>| {
        v.as_deref().map(parse_fraction).transpose().map_err(|e| format!("{flag}: {e}"))
    };
    Ok(Thresholds {
        min_top1: fraction("--min-top1", &args.min_top1)?,
        max_kl: args.max_kl,
        max_rel_rmse: args.max_rel_rmse,
        max_ppl_increase: fraction("--max-ppl-increase", &args.max_ppl_increase)?,
    })
}

/// Ctrl-C once: finish the current window and report what was measured; twice: quit now.
fn interruptible() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nsnapshot-diff: interrupted; finishing the current window (Ctrl-C again to quit now)");
    })
    .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    Ok(stop)
}

/// `--json` output: the report, then the checks and the verdict.
#[derive(Serialize)]
struct JsonOutput<'a> {
    #[serde(flatten)]
    report: &'a Report,
    checks: &'a [Check],
    passed: bool,
}

fn diff(args: &Args) -> Result<Outcome, String> {
    let job = job(args)?;
    let limits = thresholds(args)?;
    let tolerance = Tolerance {
        relative: parse_fraction(&args.tolerance).map_err(|e| format!("--tolerance: {e}"))?,
        absolute: args.tolerance_abs,
    };
    let snapshot = args.check.as_deref().map(golden::load).transpose()?;
    let stop = interruptible()?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("comparing {bar:40} {pos}/{len} runs ({elapsed}, eta {eta})")
            .map_err(|e| e.to_string())?,
    );
    let report = rbe::diff::run(&job, &stop, &bar)?;
    bar.finish_and_clear();
    let mut checks = limits.evaluate(&report)?;
    if let Some(snapshot) = &snapshot {
        if report.partial {
            eprintln!("snapshot-diff: partial run, not checked against the snapshot");
        } else {
            checks.extend(golden::check(snapshot, &report, tolerance)?);
        }
    }
    if let Some(path) = &args.save {
        if report.partial {
            eprintln!("snapshot-diff: partial run, snapshot not saved");
        } else {
            golden::save(path, &report)?;
        }
    }
    if let Some(path) = &args.html {
        write_html(path, std::slice::from_ref(&report), &args.convert_report)?;
    }
    let passed = checks.iter().all(|c| c.ok);
    if args.json {
        let out = JsonOutput { report: &report, checks: &checks, passed };
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
    } else {
        print!("{}", report.table(&checks));
    }
    Ok(match (report.partial, passed) {
        (true, _) => Outcome::Interrupted,
        (false, true) => Outcome::Pass,
        (false, false) => Outcome::Fail,
    })
}
