//! `rbe-convert`: compress an ONNX model's weights with the RBE codec into an `.rbeonnx`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rbe::codec::EncodeParams;
use rbe::container::ContainerBuilder;
use rbe::convert::{self, ConvertReport};
use rbe_runtime::onnx::{self, ExternalData};

/// Compress an ONNX model's MatMul/Gemm, Gather and LayerNorm weights into an .rbeonnx container.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The input: an .onnx model (or, with --unpack-graph, an .rbeonnx container).
    input: PathBuf,
    /// The output file.
    #[arg(short, long)]
    output: PathBuf,
    /// q8 (near-lossless), q4 (default, ~4.5 bits per weight) or q3.
    #[arg(long, default_value = "q4")]
    preset: String,
    /// Bits per residual code (2..=8), overriding the preset.
    #[arg(long)]
    bits: Option<u8>,
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

fn run(args: Args) -> Result<(), String> {
    check_output(&args)?;
    if args.unpack_graph {
        let model = rbe::container::unpack_to_onnx(&args.input)?;
        return rbe::atomic::write(&args.output, &prost::Message::encode_to_vec(&model));
    }
    let params = params(&args)?;
    let mut model = onnx::read_model(&args.input).map_err(|e| e.to_string())?;
    let dir = args.input.parent().unwrap_or(Path::new("."));
    let input_bytes = model_size(&args.input, &model);
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("encoding {bar:40} {pos}/{len} tensors ({elapsed})")
            .map_err(|e| e.to_string())?,
    );
    let tensors = convert::convert(
        &mut model,
        ExternalData::Folder(dir),
        &params,
        &|n| bar.set_length(n as u64),
        &|| bar.inc(1),
    )?;
    bar.finish_and_clear();
    let mut builder = ContainerBuilder::new(args.zstd_level);
    if let Some(graph) = model.graph.as_mut() {
        graph.initializer.iter_mut().for_each(|t| builder.externalize(t));
    }
    let bytes = builder.finish(&model)?;
    rbe::atomic::write(&args.output, &bytes)?;
    let report = ConvertReport::new(args.preset.clone(), tensors, input_bytes, bytes.len() as u64);
    print!("{}", report.table());
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        rbe::atomic::write(path, json.as_bytes())?;
    }
    Ok(())
}

/// The model file's size plus every external data file it references.
fn model_size(path: &Path, model: &onnx::proto::ModelProto) -> u64 {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut files: Vec<&str> = model
        .graph
        .iter()
        .flat_map(|g| g.initializer.iter())
        .flat_map(|t| t.external_data.iter())
        .filter(|e| e.key == "location")
        .map(|e| e.value.as_str())
        .collect();
    files.sort_unstable();
    files.dedup();
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    size(path) + files.iter().map(|f| size(&dir.join(f))).sum::<u64>()
}
