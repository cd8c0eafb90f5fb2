//! `If`: runs one of two nested graphs (optimum's merged decoders choose between the first
//! step and the steps with a KV cache this way).
//!
//! Each branch is built at load into its own planned [`Graph`] that reads the enclosing
//! graph's values by name: constants (the weights) are handed over at load, so the branch
//! folds and fuses like a main graph; values computed at run time arrive as trailing inputs of
//! the node (see `graph::scope::with_implicit_inputs`).

use crate::error::{op_err, Result};
use crate::graph::{build_nested, outer_names, Graph, OuterValue};
use crate::ops::{input, Kernel, OpContext, Registry};
use crate::tensor::Tensor;

pub fn register(r: &mut Registry) {
    r.register("", "If", 1, if_kernel);
}

/// A planned branch and where its run-time inputs come from.
struct Branch {
    graph: Graph,
    /// (index of the node input, name inside the branch) of each value computed at run time.
    feeds: Vec<(usize, String)>,
}

impl Branch {
    fn build(ctx: &OpContext, attr: &str) -> Result<Self> {
        let scope = ctx
            .scope
            .ok_or_else(|| op_err("If needs the model's scope to build its branches"))?;
        let body = ctx
            .attrs
            .graph(attr)
            .ok_or_else(|| op_err(format!("attribute '{attr}' (a graph) is required")))?;
        if body.output.len() != ctx.num_outputs() {
            return Err(op_err(format!(
                "branch '{attr}' has {} outputs, the node {}",
                body.output.len(),
                ctx.num_outputs()
            )));
        }
        let mut outer = Vec::new();
        let mut feeds = Vec::new();
        for name in outer_names(body) {
            // Trailing inputs start after the condition.
            let index = ctx.node.input.iter().skip(1).position(|n| *n == name).map(|i| i + 1);
            let index = index.ok_or_else(|| op_err(format!("branch '{attr}' reads '{name}', which is not in scope")))?;
            let value = match (ctx.constant(index), ctx.shared_u8(index)) {
                (Some(t), _) => OuterValue::Constant(t.clone()),
                (None, Some(bytes)) => OuterValue::Shared(bytes.clone()),
                (None, None) => {
                    feeds.push((index, name.clone()));
                    OuterValue::Runtime
                }
            };
            outer.push((name, value));
        }
        let graph = build_nested(body, scope, outer).map_err(|e| op_err(format!("branch '{attr}': {e}")))?;
        Ok(Self { graph, feeds })
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let feeds = self
            .feeds
            .iter()
            .map(|(i, name)| Ok((name.clone(), input(inputs, *i)?.clone())))
            .collect::<Result<Vec<_>>>()?;
        let outputs = self.graph.run(feeds).map_err(|e| op_err(e.to_string()))?;
        Ok(outputs.into_iter().map(|(_, t)| t).collect())
    }
}

struct If {
    then_branch: Branch,
    else_branch: Branch,
    /// Node inputs handed to the branches at load (constants); the graph no longer passes them.
    absorbed: Vec<bool>,
}

fn if_kernel(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let then_branch = Branch::build(ctx, "then_branch")?;
    let else_branch = Branch::build(ctx, "else_branch")?;
    let absorbed = (0..ctx.node.input.len())
        .map(|i| i > 0 && (ctx.constant(i).is_some() || ctx.shared_u8(i).is_some()))
        .collect();
    Ok(Box::new(If { then_branch, else_branch, absorbed }))
}

impl Kernel for If {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let cond = input(inputs, 0)?;
        let flag = match cond {
            Tensor::Bool(a) if a.len() == 1 => a.iter().next().copied().unwrap_or(false),
            other => {
                return Err(op_err(format!(
                    "the condition must be one bool, got {} {:?}",
                    other.dtype(),
                    other.shape()
                )))
            }
        };
        if flag {
            self.then_branch.run(inputs)
        } else {
            self.else_branch.run(inputs)
        }
    }

    fn absorbs(&self, input: usize) -> bool {
        self.absorbed.get(input).copied().unwrap_or(false)
    }

    fn nested_graphs(&self) -> Vec<&Graph> {
        vec![&self.then_branch.graph, &self.else_branch.graph]
    }
}

#[cfg(test)]
mod tests {
    use crate::onnx::proto::attribute_proto::AttributeType;
    use crate::onnx::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto};
    use crate::onnx::{tensor_to_proto, ExternalData};
    use crate::options::SessionOptions;
    use crate::session::Session;
    use crate::tensor::Tensor;

    use crate::ops::testutil::graph_node as n;

    fn info(name: &str) -> ValueInfoProto {
        ValueInfoProto { name: name.into(), ..Default::default() }
    }

    fn branch(nodes: Vec<NodeProto>, output: &str, initializers: &[(&str, Tensor)]) -> GraphProto {
        GraphProto {
            node: nodes,
            output: vec![info(output)],
            initializer: initializers.iter().map(|(name, t)| tensor_to_proto(name, t)).collect(),
            ..Default::default()
        }
    }

    fn if_node(cond: &str, then_branch: GraphProto, else_branch: GraphProto, output: &str) -> NodeProto {
        let attr = |name: &str, g: GraphProto| AttributeProto {
            name: name.into(),
            r#type: AttributeType::Graph as i32,
            g: Some(g),
            ..Default::default()
        };
        NodeProto {
            attribute: vec![attr("then_branch", then_branch), attr("else_branch", else_branch)],
            ..n("If", &[cond], output)
        }
    }

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::from_vec(shape, data.to_vec()).unwrap()
    }

    /// `h = x + x`, then `If(flag)`: the then branch nests another `If(flag)` whose then branch
    /// multiplies `h` by the main graph's weight `w` (two scopes out), the else branches read
    /// `h`, the main graph's `c` and an initializer of their own.
    fn model() -> ModelProto {
        let inner = if_node(
            "flag",
            branch(vec![n("MatMul", &["h", "w"], "a")], "a", &[]),
            branch(vec![n("Neg", &["h"], "b")], "b", &[]),
            "inner",
        );
        let then_branch = branch(vec![inner], "inner", &[]);
        let else_branch = branch(
            vec![n("Sub", &["h", "c"], "d"), n("Mul", &["d", "k"], "e")],
            "e",
            &[("k", Tensor::scalar(2.0f32))],
        );
        ModelProto {
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(GraphProto {
                node: vec![n("Add", &["x", "x"], "h"), if_node("flag", then_branch, else_branch, "y")],
                input: vec![info("x"), info("flag")],
                output: vec![info("y")],
                initializer: vec![
                    tensor_to_proto("w", &t(&[2, 2], &[1.0, 2.0, 3.0, 4.0])),
                    tensor_to_proto("c", &t(&[2], &[10.0, 20.0])),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn run(session: &Session, flag: Tensor) -> crate::error::Result<Vec<f32>> {
        let x = t(&[1, 2], &[1.0, -2.0]);
        let out = session.run(vec![("x".into(), x), ("flag".into(), flag)])?;
        Ok(out[0].1.as_f32()?.iter().copied().collect())
    }

    #[test]
    fn branches_read_values_and_weights_of_every_enclosing_scope() {
        for fuse in [true, false] {
            let options = SessionOptions { fuse, ..Default::default() };
            let session = Session::from_model_with(&model(), ExternalData::Refused, &options).unwrap();
            let yes = Tensor::from_vec(&[], vec![true]).unwrap();
            let no = Tensor::from_vec(&[1], vec![false]).unwrap();
            // h = [2, -4]: h·w = [2 - 12, 4 - 16]; (h - c) * 2 = [-16, -48].
            assert_eq!(run(&session, yes).unwrap(), [-10.0, -12.0], "fuse {fuse}");
            assert_eq!(run(&session, no).unwrap(), [-16.0, -48.0], "fuse {fuse}");
        }
    }

    #[test]
    fn a_condition_that_is_not_one_bool_is_an_error() {
        let session = Session::from_model_with(&model(), ExternalData::Refused, &SessionOptions::default()).unwrap();
        let err = run(&session, Tensor::from_vec(&[2], vec![true, false]).unwrap()).unwrap_err();
        assert!(err.to_string().contains("one bool"), "{err}");
        let err = run(&session, Tensor::scalar(1.0f32)).unwrap_err();
        assert!(err.to_string().contains("one bool"), "{err}");
    }

    fn load_error(m: &ModelProto) -> String {
        match Session::from_model_with(m, ExternalData::Refused, &SessionOptions::default()) {
            Ok(_) => panic!("the model loaded"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn malformed_branches_are_load_errors() {
        // A branch reading a value no scope defines.
        let mut m = model();
        let graph = m.graph.as_mut().unwrap();
        graph.node[1].attribute[1].g.as_mut().unwrap().node[0].input[1] = "nowhere".into();
        let err = load_error(&m);
        assert!(err.contains("nowhere"), "{err}");
        // A branch with more outputs than the node.
        let mut m = model();
        let graph = m.graph.as_mut().unwrap();
        graph.node[1].attribute[1].g.as_mut().unwrap().output.push(info("d"));
        let err = load_error(&m);
        assert!(err.contains("outputs"), "{err}");
        // A missing branch.
        let mut m = model();
        m.graph.as_mut().unwrap().node[1].attribute.pop();
        let err = load_error(&m);
        assert!(err.contains("else_branch"), "{err}");
    }
}
