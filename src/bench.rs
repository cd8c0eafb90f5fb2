//! Timing helpers for `--bench`: a warm-up, then the median and minimum of N runs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rbe_runtime::{Session, Tensor};

/// Runs `f` once to warm up, then `n` (at least 1) times; returns (median, min) in ms.
pub fn time_runs<E>(n: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<(f64, f64), E> {
    f()?;
    let mut times = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}

/// Nodes listed by name under the op table: the slowest ones.
const SLOWEST_NODES: usize = 8;

/// Time per op type over `n` (at least 1) profiled runs of `inputs`: one line per op type
/// (`domain::op` outside the default domain), slowest first, with its node count, ms per run
/// and share of the kernels' total; then the [`SLOWEST_NODES`] slowest nodes by name.
pub fn profile_by_op(session: &Session, inputs: &[(String, Tensor)], n: usize) -> Result<String, String> {
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..n.max(1) {
        session.run_profiled(inputs.to_vec(), &mut times).map_err(|e| e.to_string())?;
    }
    let op_name = |node: &rbe_runtime::graph::Node| match node.domain.as_str() {
        "" => node.op_type.clone(),
        domain => format!("{domain}::{}", node.op_type),
    };
    let mut by_op: HashMap<String, (usize, Duration)> = HashMap::new();
    for (node, time) in session.graph().nodes().iter().zip(&times) {
        let entry = by_op.entry(op_name(node)).or_default();
        entry.0 += 1;
        entry.1 += *time;
    }
    let total: Duration = times.iter().sum();
    let mut rows: Vec<(String, (usize, Duration))> = by_op.into_iter().collect();
    rows.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| a.0.cmp(&b.0)));
    let per_run = |d: Duration| d.as_secs_f64() * 1e3 / n.max(1) as f64;
    let mut out = format!("{:<28} {:>6} {:>10} {:>7}\n", "op", "nodes", "ms/run", "share");
    for (name, (count, time)) in rows {
        let share = 100.0 * time.as_secs_f64() / total.as_secs_f64().max(f64::MIN_POSITIVE);
        out += &format!("{name:<28} {count:>6} {:>10.3} {share:>6.1}%\n", per_run(time));
    }
    out += &format!("{:<28} {:>6} {:>10.3}\n", "all kernels", times.len(), per_run(total));
    let mut nodes: Vec<_> = session.graph().nodes().iter().zip(&times).collect();
    nodes.sort_by(|a, b| b.1.cmp(a.1));
    out += &format!("slowest nodes:\n{:<40} {:<28} {:>10} {:>7}\n", "node", "op", "ms/run", "share");
    for (node, &time) in nodes.into_iter().take(SLOWEST_NODES) {
        let share = 100.0 * time.as_secs_f64() / total.as_secs_f64().max(f64::MIN_POSITIVE);
        out += &format!("{:<40} {:<28} {:>10.3} {share:>6.1}%\n", node.name, op_name(node), per_run(time));
    }
    Ok(out)
}
