//! Shape-only nodes remembered between runs. A `Shape` (or `Size`) node's output depends only
//! on its input's shape, and pure ops (Gather, Unsqueeze, Concat, Cast, arithmetic, ...) on
//! such outputs and constants depend only on those shapes too. A generation step recomputes
//! hundreds of them with the same results while its inputs keep their shapes (GPT-2's optimum
//! export with past: 250 `Shape` nodes and the Gather, Unsqueeze and Concat chains after
//! them). The memo keeps each such node's last outputs and hands them out again while every
//! `Shape` node they depend on sees the shape it saw last time.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Node, ValueId};
use crate::error::Result;
use crate::tensor::Tensor;

/// Default-domain ops whose outputs are pure functions of their inputs and attributes.
const PURE: &[&str] = &[
    "Abs", "Add", "And", "Cast", "Ceil", "Concat", "ConstantOfShape", "Div", "Equal", "Expand", "Flatten", "Floor",
    "Gather", "Greater", "GreaterOrEqual", "Identity", "Less", "LessOrEqual", "Max", "Min", "Mod", "Mul", "Neg",
    "Not", "Or", "Pow", "Range", "ReduceProd", "Reshape", "Slice", "Sqrt", "Squeeze", "Sub", "Tile", "Transpose",
    "Unsqueeze", "Where",
];
/// Outputs of more elements than this (all of a node's outputs together) are recomputed at
/// every run rather than kept.
const MAX_KEPT: usize = 4096;

/// Which nodes depend on shapes alone, and the last successful run's outputs of them.
pub(super) struct ShapeMemo {
    /// Per node: the `Shape`/`Size` nodes its outputs depend on (itself for one of them);
    /// `None` for a node that reads anything else (a graph input, a computed activation).
    roots: Vec<Option<Vec<usize>>>,
    /// What the last successful run left; a run takes it and puts its own back.
    last: Mutex<Option<Kept>>,
}

/// Per node: the input shape a `Shape`/`Size` node saw, and the outputs kept.
struct Kept {
    shapes: Vec<Option<Vec<usize>>>,
    outputs: Vec<Option<Vec<Tensor>>>,
}

/// One run's use of a [`ShapeMemo`].
pub(super) struct MemoRun<'m> {
    memo: &'m ShapeMemo,
    kept: Kept,
    /// Per node: it is a `Shape`/`Size` node whose input has the shape of the kept run.
    same: Vec<bool>,
}

impl ShapeMemo {
    /// Finds the shape-only nodes of `nodes` (in execution order); `constant(id)` says whether
    /// value `id` is a constant.
    pub(super) fn plan(nodes: &[Node], constant: impl Fn(ValueId) -> bool) -> Self {
        let mut producer: HashMap<ValueId, usize> = HashMap::new();
        let mut roots: Vec<Option<Vec<usize>>> = vec![None; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
            if default_domain && matches!(node.op_type.as_str(), "Shape" | "Size") {
                roots[i] = Some(vec![i]);
            } else if default_domain && PURE.contains(&node.op_type.as_str()) {
                let mut from = Some(Vec::new());
                for id in node.inputs.iter().flatten().filter(|id| !constant(**id)) {
                    match (producer.get(id).and_then(|&p| roots[p].as_ref()), from.as_mut()) {
                        (Some(r), Some(from)) => from.extend_from_slice(r),
                        _ => from = None,
                    }
                }
                roots[i] = from.filter(|r| !r.is_empty()).map(|mut r| {
                    r.sort_unstable();
                    r.dedup();
                    r
                });
            }
            for id in node.outputs.iter().flatten() {
                producer.insert(*id, i);
            }
        }
        ShapeMemo { roots, last: Mutex::new(None) }
    }

    /// Starts a run: takes the last run's state (none when another run holds it).
    pub(super) fn start(&self) -> MemoRun<'_> {
        let n = self.roots.len();
        let kept = self.last.lock().ok().and_then(|mut last| last.take());
        let kept = kept.unwrap_or_else(|| Kept { shapes: vec![None; n], outputs: vec![None; n] });
        MemoRun { memo: self, kept, same: vec![false; n] }
    }
}

impl MemoRun<'_> {
    /// Whether node `i` is a `Shape`/`Size` node, whose input's shape [`saw`](Self::saw) wants.
    pub(super) fn reads_shape(&self, i: usize) -> bool {
        self.memo.roots.get(i).and_then(Option::as_ref).is_some_and(|r| r.as_slice() == [i])
    }

    /// Notes the shape of `Shape`/`Size` node `i`'s input in this run.
    pub(super) fn saw(&mut self, i: usize, shape: Option<&[usize]>) {
        let same = shape.is_some() && self.kept.shapes[i].as_deref() == shape;
        self.same[i] = same;
        if !same {
            self.kept.shapes[i] = shape.map(<[usize]>::to_vec);
        }
    }

    /// Node `i`'s outputs: the kept ones when it depends on shapes alone and every `Shape`
    /// node it depends on saw the shape of the kept run, else `run()`'s (kept when small).
    pub(super) fn outputs(&mut self, i: usize, run: impl FnOnce() -> Result<Vec<Tensor>>) -> Result<Vec<Tensor>> {
        let Some(roots) = self.memo.roots.get(i).and_then(Option::as_ref) else {
            return run();
        };
        if roots.iter().all(|&r| self.same[r]) {
            if let Some(outputs) = &self.kept.outputs[i] {
                return Ok(outputs.clone());
            }
        }
        let outputs = run()?;
        let small = outputs.iter().map(Tensor::len).sum::<usize>() <= MAX_KEPT;
        self.kept.outputs[i] = small.then(|| outputs.clone());
        Ok(outputs)
    }

    /// Leaves this run's state for the next run. Only for a run that completed: a failed one
    /// may have seen new shapes without recomputing what depends on them.
    pub(super) fn finish(self) {
        if let Ok(mut last) = self.memo.last.lock() {
            *last = Some(self.kept);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::onnx::proto::{GraphProto, ModelProto, OperatorSetIdProto, ValueInfoProto};
    use crate::onnx::{tensor_to_proto, ExternalData};
    use crate::session::Session;
    use crate::tensor::Tensor;

    use crate::ops::testutil::graph_node as n;

    /// `y = Reshape(x, [-1, dim 0 of x])` through Shape, Gather, Unsqueeze and Concat, and
    /// `z = Reshape(x, w)` between the Shape node and the rest, which fails for a bad `w`.
    fn session() -> Session {
        let info = |name: &str| ValueInfoProto { name: name.into(), ..Default::default() };
        let consts = [
            ("zero", Tensor::from_vec(&[], vec![0i64]).unwrap()),
            ("axes", Tensor::from_vec(&[1], vec![0i64]).unwrap()),
            ("minus_one", Tensor::from_vec(&[1], vec![-1i64]).unwrap()),
        ];
        let mut concat = n("Concat", &["minus_one", "d0"], "new_shape");
        concat.attribute.push(crate::onnx::attributes::int_attr("axis", 0));
        let model = ModelProto {
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 20 }],
            graph: Some(GraphProto {
                node: vec![
                    n("Shape", &["x"], "s"),
                    n("Reshape", &["x", "w"], "z"),
                    n("Gather", &["s", "zero"], "d"),
                    n("Unsqueeze", &["d", "axes"], "d0"),
                    concat,
                    n("Reshape", &["x", "new_shape"], "y"),
                ],
                input: vec![info("x"), info("w")],
                output: vec![info("y"), info("z")],
                initializer: consts.iter().map(|(name, t)| tensor_to_proto(name, t)).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Session::from_model(&model, ExternalData::Refused).unwrap()
    }

    fn run(s: &Session, x: &[usize], w: &[i64]) -> Result<Vec<usize>, String> {
        let len = x.iter().product();
        let feeds = vec![
            ("x".to_string(), Tensor::from_vec(x, vec![1f32; len]).unwrap()),
            ("w".to_string(), Tensor::from_vec(&[w.len()], w.to_vec()).unwrap()),
        ];
        s.run(feeds).map(|out| out[0].1.shape().to_vec()).map_err(|e| e.to_string())
    }

    #[test]
    fn plans_the_shape_chain_only() {
        let s = session();
        let roots = &s.graph().shape_memo.roots;
        let ops: Vec<(&str, bool)> = s.graph().nodes().iter().zip(roots).map(|(n, r)| (n.op_type.as_str(), r.is_some())).collect();
        assert_eq!(
            ops,
            [("Shape", true), ("Reshape", false), ("Gather", true), ("Unsqueeze", true), ("Concat", true), ("Reshape", false)]
        );
    }

    #[test]
    fn kept_outputs_follow_the_shapes_and_survive_no_failed_run() {
        let s = session();
        assert_eq!(run(&s, &[2, 3], &[3, 2]), Ok(vec![3, 2]));
        assert_eq!(run(&s, &[2, 3], &[6]), Ok(vec![3, 2]), "kept");
        assert_eq!(run(&s, &[4, 3], &[3, 4]), Ok(vec![3, 4]), "a new shape");
        // The Shape node sees [5, 2], then `z` fails before the chain is recomputed: that run
        // must leave nothing the next run with [5, 2] would take as current.
        assert!(run(&s, &[5, 2], &[7, 7]).is_err());
        assert_eq!(run(&s, &[5, 2], &[10]), Ok(vec![2, 5]));
        assert_eq!(run(&s, &[4, 3], &[12]), Ok(vec![3, 4]));
    }
}
