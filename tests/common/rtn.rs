//! The plain round-to-nearest baseline applied to a whole model: every 2-D float weight of a
//! MatMul/Gemm (along its reduction axis) or a Gather table (along its rows), symmetric absmax
//! in groups, written back as f32 so the model runs unchanged.

use std::collections::HashMap;

use rbe::codec::rtn_absmax;
use rbe_runtime::graph::nested_graphs;
use rbe_runtime::onnx::proto::{GraphProto, ModelProto};
use rbe_runtime::onnx::{tensor_from_proto, tensor_to_proto, ExternalData};
use rbe_runtime::Tensor;

/// Along which axis each 2-D weight is reduced when used: true when its rows are the output
/// rows as stored (Gather tables, transB Gemm weights, Transpose'd LM heads). Nodes inside `If`
/// branches count too (a merged decoder's weights are read there).
fn row_layout(model: &ModelProto) -> HashMap<String, bool> {
    let mut layout = HashMap::new();
    add_layout(model.graph.as_ref().unwrap(), &mut layout);
    layout
}

fn add_layout(graph: &GraphProto, layout: &mut HashMap<String, bool>) {
    for node in &graph.node {
        nested_graphs(node).for_each(|g| add_layout(g, layout));
        let attrs = rbe_runtime::ops::Attrs::new(node);
        match node.op_type.as_str() {
            "Gather" | "Transpose" => {
                layout.insert(node.input[0].clone(), true);
            }
            "MatMul" => {
                layout.entry(node.input[1].clone()).or_insert(false);
            }
            "Gemm" => {
                layout.insert(node.input[1].clone(), attrs.int_or("transB", 0) != 0);
            }
            _ => {}
        }
    }
}

/// A copy of `model` whose weights went through RTN at `bits` in groups of `group`.
pub fn rtn_model(model: &ModelProto, bits: u8, group: usize) -> ModelProto {
    let layout = row_layout(model);
    let mut out = model.clone();
    for init in &mut out.graph.as_mut().unwrap().initializer {
        let Some(&rows_first) = layout.get(&init.name) else { continue };
        let t = tensor_from_proto(init, ExternalData::Refused).unwrap();
        let Tensor::F32(a) = &t else { continue };
        let &[r, c] = a.shape() else { continue };
        let data: Vec<f32> = a.iter().copied().collect();
        let q = if rows_first {
            rtn_absmax(&data, r, c, bits, group)
        } else {
            let t = transpose(&data, r, c);
            transpose(&rtn_absmax(&t, c, r, bits, group), c, r)
        };
        *init = tensor_to_proto(&init.name, &Tensor::from_vec(&[r, c], q).unwrap());
    }
    out
}

fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}
