//! Accuracy-targeted bit allocation (`rbe-convert --target-kl X | --min-top1 P | --avg-bpw B`):
//! every weight is encoded at every width the allocation may choose; the model-level
//! sensitivity of each kind of weight (how much KL its distortion adds) is measured by running
//! the model with that kind alone at a narrow width; a Lagrangian search picks one width per
//! weight for the fewest bytes at a predicted KL, measured on calibration windows and bisected
//! until the target holds; the result is checked on held-out windows, tightening the search
//! when it does not hold there.

mod candidates;
mod judge;
mod search;

pub use candidates::{encode_all, kind_of, Choices, Encoding};
pub use judge::{Measured, Reference};

use std::cmp::Reverse;
use std::collections::HashMap;

use rbe_runtime::onnx::proto::ModelProto;
use rbe_runtime::onnx::ExternalData;
use serde::Serialize;

use crate::codec::Encoded;
use search::{Assignment, Costs};

/// What the allocation must reach.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Target {
    /// Mean KL to the original at most this (nats).
    Kl(f64),
    /// Top-1 agreement with the original at least this share.
    Top1(f64),
    /// At most this many bits per encoded weight on average, every stored byte counted.
    Bpw(f64),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Kl(x) => write!(f, "mean KL <= {x}"),
            Target::Top1(p) => write!(f, "top-1 agreement >= {p}"),
            Target::Bpw(b) => write!(f, "average bits per weight <= {b}"),
        }
    }
}

/// The widths an allocation chooses from unless told otherwise.
pub const DEFAULT_WIDTHS: [u8; 6] = [2, 3, 4, 5, 6, 8];
/// The width each kind of weight is probed at to measure its sensitivity.
const PROBE_BITS: u8 = 3;
/// More kinds than this are probed as one (names without a per-layer pattern).
const MAX_PROBES: usize = 64;
/// Model runs the search spends per round at most.
const SEARCH_RUNS: usize = 8;
/// The search stops once the predicted-KL budgets that passed and failed are this close (a
/// ratio): near a uniform width a few percent of predicted KL is a tenth of a bit.
const SEARCH_RESOLUTION: f64 = 1.04;
/// Rounds of search + held-out check at most.
const ROUNDS: usize = 4;
/// After a failed held-out check, the next round searches below this share of its prediction.
const CHECK_BACKOFF: f64 = 0.7;
/// The same, when the failure also tightened the aim (a KL target).
const CLOSE_BACKOFF: f64 = 0.98;
/// Margin kept below the aim derived from a failed held-out check.
const AIM_MARGIN: f64 = 0.95;

/// An allocation's target and the formats it chooses from.
pub struct Goal<'a> {
    /// What to reach.
    pub target: Target,
    /// Code widths (2..=8) to choose from.
    pub widths: Vec<u8>,
    /// Group lengths to choose from, each with every width (a multiple of 8 dividing the tile).
    pub groups: Vec<usize>,
    /// Called with each measurement as it is made.
    pub on_step: &'a (dyn Fn(&Step) + Sync),
}

impl Goal<'_> {
    /// Rejects a target out of range or widths outside 2..=8.
    pub fn validate(&self) -> Result<(), String> {
        let ok = match self.target {
            Target::Kl(x) => x.is_finite() && x > 0.0,
            Target::Top1(p) => p > 0.0 && p <= 1.0,
            Target::Bpw(b) => b.is_finite() && b > 0.0,
        };
        if !ok {
            return Err(format!("the allocation target ({}) is out of range", self.target));
        }
        if self.widths.is_empty() || self.widths.iter().any(|b| !(2..=8).contains(b)) {
            return Err(format!("allocation widths must be in 2..=8, got {:?}", self.widths));
        }
        if self.groups.is_empty() || self.groups.iter().any(|g| !(16..=256).contains(g) || g % 8 != 0) {
            return Err(format!("allocation groups must be multiples of 8 in 16..=256, got {:?}", self.groups));
        }
        Ok(())
    }

    /// Every (code width, group length) the allocation chooses from: each width with each
    /// group, in the order given.
    pub fn formats(&self) -> Vec<Format> {
        self.widths.iter().flat_map(|&bits| self.groups.iter().map(move |&group| Format { bits, group })).collect()
    }
}

/// One way to encode a weight: its code width and group length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Format {
    /// Residual code width.
    pub bits: u8,
    /// Quantization group length along a row.
    pub group: usize,
}

/// One kind of weight's measured sensitivity.
#[derive(Clone, Debug, Serialize)]
pub struct KindSensitivity {
    /// The kind (a weight name with its digit runs as `#`).
    pub kind: String,
    /// Weights of this kind.
    pub tensors: usize,
    /// Measured with this kind at this format, everything else at the widest.
    pub probe: Format,
    /// Mean KL measured so.
    pub kl: f64,
    /// KL added per unit of summed distortion (the slope the prediction uses).
    pub kl_per_distortion: f64,
}

/// One model run of the allocation.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// `probe` (sensitivity), `search` (calibration windows) or `check` (held-out windows).
    pub stage: &'static str,
    /// What was run: the probed kind, or the search round.
    pub what: String,
    /// Predicted mean KL of the assignment (NaN for the probes, made before any prediction).
    pub predicted_kl: f64,
    /// Its average bits per encoded weight.
    pub bits_per_weight: f64,
    /// What the run measured.
    pub measured: Measured,
}

/// The chosen encoding of one weight.
#[derive(Clone, Debug, Serialize)]
pub struct Chosen {
    /// The weight.
    pub name: String,
    /// Its code width.
    pub bits: u8,
    /// Its group length.
    pub group: usize,
    /// Its bits per weight, every stored byte counted.
    pub bits_per_weight: f64,
    /// Its predicted share of the KL.
    pub predicted_kl: f64,
}

/// What the allocation did and reached.
#[derive(Clone, Debug, Serialize)]
pub struct AllocationReport {
    /// The target.
    pub target: Target,
    /// Whether the held-out check meets it.
    pub met: bool,
    /// The formats chosen from.
    pub formats: Vec<Format>,
    /// Tokens the search measured on / the check measured on.
    pub search_tokens: usize,
    /// Held-out tokens of the check.
    pub check_tokens: usize,
    /// Average bits per encoded weight of the result.
    pub bits_per_weight: f64,
    /// Predicted mean KL of the result.
    pub predicted_kl: f64,
    /// The result measured on the held-out windows.
    pub measured: Measured,
    /// Per kind of weight, its measured sensitivity.
    pub sensitivity: Vec<KindSensitivity>,
    /// Every model run, in order.
    pub trace: Vec<Step>,
    /// Per weight, the chosen encoding.
    pub chosen: Vec<Chosen>,
}

impl AllocationReport {
    /// Lines for the end of the conversion's table: how many tensors got each width, and the
    /// result against the target.
    pub fn summary(&self) -> String {
        let mut formats: Vec<(u8, usize)> = self.chosen.iter().map(|c| (c.bits, c.group)).collect();
        formats.sort_unstable();
        formats.dedup();
        let one_group = formats.windows(2).all(|w| w[0].1 == w[1].1);
        let counts: Vec<String> = formats
            .iter()
            .map(|&(b, g)| {
                let n = self.chosen.iter().filter(|c| (c.bits, c.group) == (b, g)).count();
                if one_group { format!("{b} bits x {n}") } else { format!("{b} bits in groups of {g} x {n}") }
            })
            .collect();
        format!(
            "allocation for {}: {} ({} model runs); {:.3} bits per weight; predicted KL {:.4}; held-out ({} tokens): KL {:.4}, top-1 {:.4}: {}\n",
            self.target,
            counts.join(", "),
            self.trace.len(),
            self.bits_per_weight,
            self.predicted_kl,
            self.check_tokens,
            self.measured.kl,
            self.measured.top1,
            if self.met { "target met" } else { "TARGET NOT MET" }
        )
    }
}

/// The model the measurements run: the rewritten graph without its encoded weights, where
/// they go (`names`, one per weight), and the windows of the search and of the check.
pub struct Bench<'a> {
    /// The rewritten model, without the encoded weights.
    pub template: &'a ModelProto,
    /// Its external data.
    pub data: ExternalData<'a>,
    /// The encoded initializer name of each weight.
    pub names: &'a [String],
    /// The original's logits on the search windows.
    pub search: &'a Reference,
    /// The original's logits on the held-out windows.
    pub check: &'a Reference,
}

/// The state of one allocation.
struct Allocator<'a> {
    bench: &'a Bench<'a>,
    choices: &'a [Choices],
    goal: &'a Goal<'a>,
    weights: usize,
    trace: Vec<Step>,
    /// Search measurements already made, by assignment.
    seen: HashMap<Vec<usize>, Measured>,
}

impl Allocator<'_> {
    fn bpw(&self, a: &Assignment) -> f64 {
        a.bytes as f64 * 8.0 / self.weights.max(1) as f64
    }

    fn run(&mut self, stage: &'static str, what: String, a: &Assignment) -> Result<Measured, String> {
        if stage != "check" {
            if let Some(m) = self.seen.get(&a.chosen) {
                return Ok(*m);
            }
        }
        let encoded: Vec<&Encoded> = self.choices.iter().zip(&a.chosen).map(|(c, &i)| &c.options[i].encoded).collect();
        let windows = if stage == "check" { self.bench.check } else { self.bench.search };
        let measured = windows.measure(self.bench.template, self.bench.data, self.bench.names, &encoded)?;
        let step = Step { stage, what, predicted_kl: a.predicted_kl, bits_per_weight: self.bpw(a), measured };
        (self.goal.on_step)(&step);
        self.trace.push(step);
        if stage != "check" {
            self.seen.insert(a.chosen.clone(), measured);
        }
        Ok(measured)
    }

    /// Per weight, the KL its distortion adds per unit, from one run per kind with that kind
    /// at the probe width (everything else at the widest).
    fn sensitivities(&mut self, widest: usize, probe: usize) -> Result<(Vec<f64>, Vec<KindSensitivity>), String> {
        let n = self.choices.len();
        let base = self.run("probe", "every weight at the widest width".into(), &unpredicted(self.choices, vec![widest; n]))?;
        let mut groups = candidates::kinds(self.choices);
        if groups.len() > MAX_PROBES {
            groups = vec![("*".into(), (0..n).collect())];
        }
        let mut per_weight = vec![0.0; n];
        let mut rows = Vec::new();
        for (kind, members) in groups {
            let mut chosen = vec![widest; n];
            members.iter().for_each(|&i| chosen[i] = probe);
            let m = self.run("probe", kind.clone(), &unpredicted(self.choices, chosen))?;
            let added: f64 = members
                .iter()
                .map(|&i| self.choices[i].options[probe].distortion - self.choices[i].options[widest].distortion)
                .sum();
            // A kind whose narrowing is lost in the noise still gets a small positive slope.
            let slope = (m.kl - base.kl).max(base.kl * 1e-3).max(1e-9) / added.max(1e-30);
            members.iter().for_each(|&i| per_weight[i] = slope);
            rows.push(KindSensitivity { kind, tensors: members.len(), probe: self.goal.formats()[probe], kl: m.kl, kl_per_distortion: slope });
        }
        Ok((per_weight, rows))
    }

    /// The cheapest assignment with a predicted KL below `cap` whose measured search metric
    /// meets `aim`: the predicted-KL budget moves by the ratio of the target to the measured
    /// KL (a KL target; the prediction is off by a factor that changes slowly), or is bisected
    /// on a log scale between the largest budget that passed and the smallest that failed.
    fn search(&mut self, costs: &Costs, first: f64, cap: f64, round: usize, aim: Target) -> Result<Assignment, String> {
        let most = costs.within_kl(0.0);
        let (mut pass, mut fail): (f64, Option<f64>) = (most.predicted_kl.max(1e-12), None);
        let cap = cap.max(pass);
        let mut best: Option<Assignment> = None;
        let mut budget = first.clamp(pass, cap);
        for _ in 0..SEARCH_RUNS {
            let a = costs.within_kl(budget);
            let m = self.run("search", format!("round {round}, predicted KL budget {budget:.3e}"), &a)?;
            if meets(aim, &m) {
                pass = pass.max(budget);
                if best.as_ref().is_none_or(|b| a.bytes < b.bytes) {
                    best = Some(a);
                }
            } else {
                fail = Some(fail.map_or(budget, |f: f64| f.min(budget)));
            }
            let upper = fail.unwrap_or(cap * 1.001);
            if upper / pass < SEARCH_RESOLUTION {
                break;
            }
            let proposal = match aim {
                Target::Kl(x) => budget * 0.97 * x / m.kl.max(1e-12),
                _ if fail.is_none() => pass * 4.0,
                _ => (pass * upper).sqrt(),
            };
            budget = if proposal > pass && proposal < upper { proposal } else { (pass * upper).sqrt() };
            budget = budget.min(cap);
        }
        Ok(best.unwrap_or(most))
    }
}

/// An assignment made before there is a prediction (the probes).
fn unpredicted(choices: &[Choices], chosen: Vec<usize>) -> Assignment {
    let bytes = choices.iter().zip(&chosen).map(|(c, &i)| c.options[i].encoded.stats.bytes).sum();
    Assignment { chosen, bytes, predicted_kl: f64::NAN }
}

/// Chooses one encoding per weight of `choices` (each encoded in every format of
/// `goal.formats()`, in that order) for `goal`'s target; returns the chosen option index per
/// weight and the report. The widest format is the widest code in the shortest groups; kinds
/// are probed in another format: the width nearest [`PROBE_BITS`], in the shortest groups.
pub fn allocate(choices: &[Choices], bench: &Bench, goal: &Goal) -> Result<(Vec<usize>, AllocationReport), String> {
    goal.validate()?;
    let formats = goal.formats();
    if choices.iter().any(|c| c.options.iter().map(|o| o.format).ne(formats.iter().copied())) {
        return Err("internal: a weight lacks an encoding per format".into());
    }
    let widest = (0..formats.len()).max_by_key(|&i| (formats[i].bits, Reverse(formats[i].group))).unwrap_or(0);
    let probe = (0..formats.len())
        .filter(|&i| i != widest || formats.len() == 1)
        .min_by_key(|&i| (formats[i].bits.abs_diff(PROBE_BITS), formats[i].group))
        .unwrap_or(widest);
    let weights = choices.iter().map(|c| c.weights).sum();
    let mut al = Allocator { bench, choices, goal, weights, trace: Vec::new(), seen: HashMap::new() };
    let (slopes, sensitivity) = al.sensitivities(widest, probe)?;
    let costs = Costs::new(choices, &slopes);
    let (result, measured) = match goal.target {
        Target::Bpw(b) => {
            let a = costs.within_bytes((b * weights as f64 / 8.0).floor() as usize);
            let m = al.run("check", "the assignment within the budget".into(), &a)?;
            (a, m)
        }
        Target::Kl(_) | Target::Top1(_) => {
            // The statistics were fitted on the search windows, which therefore flatter the
            // encodings: a result that fails the held-out check on KL tightens the search's aim
            // by the ratio measured between the two sets of windows on that result, and bounds
            // the next round's search just below it; on top-1 (too coarse on few windows for a
            // ratio) it bounds the next round's predicted KL well below it.
            let mut aim = goal.target;
            let mut cap = costs.within_bytes(0).predicted_kl;
            let mut first = match goal.target {
                Target::Kl(x) => x,
                _ => (costs.within_kl(0.0).predicted_kl.max(1e-12) * cap).sqrt(),
            };
            let mut last = None;
            for round in 1..=ROUNDS {
                let a = al.search(&costs, first, cap, round, aim)?;
                let m = al.run("check", format!("round {round}"), &a)?;
                let done = meets(goal.target, &m);
                match (goal.target, al.seen.get(&a.chosen).copied()) {
                    (Target::Kl(x), Some(s)) if s.kl > 0.0 && m.kl > 0.0 => {
                        let aimed = AIM_MARGIN * x * (s.kl / m.kl).min(1.0);
                        aim = Target::Kl(aimed);
                        cap = a.predicted_kl * CLOSE_BACKOFF;
                        first = a.predicted_kl * aimed / s.kl;
                    }
                    _ => cap = a.predicted_kl * CHECK_BACKOFF,
                }
                first = first.min(cap);
                last = Some((a, m));
                if done || cap <= costs.within_kl(0.0).predicted_kl {
                    break;
                }
            }
            last.ok_or("internal: no search round ran")?
        }
    };
    let chosen = choices
        .iter()
        .zip(&result.chosen)
        .zip(&slopes)
        .map(|((c, &i), s)| {
            let o = &c.options[i];
            Chosen {
                name: c.name.clone(),
                bits: o.format.bits,
                group: o.format.group,
                bits_per_weight: o.encoded.stats.bits_per_weight,
                predicted_kl: s * o.distortion,
            }
        })
        .collect();
    let report = AllocationReport {
        target: goal.target,
        met: match goal.target {
            Target::Bpw(b) => al.bpw(&result) <= b,
            _ => meets(goal.target, &measured),
        },
        formats,
        search_tokens: bench.search.tokens(),
        check_tokens: bench.check.tokens(),
        bits_per_weight: al.bpw(&result),
        predicted_kl: result.predicted_kl,
        measured,
        sensitivity,
        trace: al.trace,
        chosen,
    };
    Ok((result.chosen, report))
}

/// Whether `m` meets `target` (a byte budget is met by construction).
fn meets(target: Target, m: &Measured) -> bool {
    match target {
        Target::Kl(x) => m.kl <= x,
        Target::Top1(p) => m.top1 >= p,
        Target::Bpw(_) => true,
    }
}
