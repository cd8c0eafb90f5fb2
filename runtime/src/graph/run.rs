//! Executing a planned graph on caller-supplied inputs.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::graph::{Graph, Node};
use crate::tensor::Tensor;

/// Watches a run node by node.
pub trait Observer {
    /// Called before node `i` of [`Graph::nodes`] runs, with its inputs.
    fn inputs(&mut self, _i: usize, _node: &Node, _args: &[Option<&Tensor>]) {}
    /// Called after node `i` ran, with its kernel's wall time.
    fn ran(&mut self, _i: usize, _elapsed: Duration) {}
}

/// Adds each node's kernel time to its entry.
struct Timer<'a>(&'a mut Vec<Duration>);

impl Observer for Timer<'_> {
    fn ran(&mut self, i: usize, elapsed: Duration) {
        self.0[i] += elapsed;
    }
}

impl Graph {
    /// Runs the graph. `feeds` must name every graph input exactly once; returns every graph
    /// output, in graph order, with its name.
    pub fn run(&self, feeds: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        self.run_watched(feeds, None)
    }

    /// [`Graph::run`], adding the wall time of each node's kernel to `times[i]` for node `i` of
    /// [`Graph::nodes`] (`times` is grown to one entry per node first).
    pub fn run_profiled(
        &self,
        feeds: Vec<(String, Tensor)>,
        times: &mut Vec<Duration>,
    ) -> Result<Vec<(String, Tensor)>> {
        times.resize(self.nodes.len().max(times.len()), Duration::ZERO);
        self.run_watched(feeds, Some(&mut Timer(times)))
    }

    /// [`Graph::run`], showing `observer` each node's inputs before it runs (calibration
    /// statistics, debugging).
    pub fn run_observed(&self, feeds: Vec<(String, Tensor)>, observer: &mut dyn Observer) -> Result<Vec<(String, Tensor)>> {
        self.run_watched(feeds, Some(observer))
    }

    /// The name of input `k` of `node` (`None` for an omitted optional input).
    pub fn input_name(&self, node: &Node, k: usize) -> Option<&str> {
        node.inputs.get(k).copied().flatten().map(|id| self.names[id].as_str())
    }

    fn run_watched(
        &self,
        feeds: Vec<(String, Tensor)>,
        mut observer: Option<&mut dyn Observer>,
    ) -> Result<Vec<(String, Tensor)>> {
        let mut slots: Vec<Option<Tensor>> = vec![None; self.names.len()];
        self.place_feeds(feeds, &mut slots)?;
        let mut memo = self.shape_memo.start();
        for (i, (node, frees)) in self.nodes.iter().zip(&self.frees).enumerate() {
            let first = self.handed_over(node, frees, &mut slots);
            let mut args = Vec::with_capacity(node.inputs.len());
            for (k, id) in node.inputs.iter().enumerate() {
                args.push(match id {
                    Some(id) if !(k == 0 && first.is_some()) => Some(self.value(&slots, *id)?),
                    _ => None,
                });
            }
            let start = observer.as_mut().map(|o| {
                match &first {
                    Some(first) => {
                        let mut seen = args.clone();
                        seen[0] = Some(first);
                        o.inputs(i, node, &seen);
                    }
                    None => o.inputs(i, node, &args),
                }
                Instant::now()
            });
            if memo.reads_shape(i) {
                memo.saw(i, first.as_ref().or(args.first().copied().flatten()).map(Tensor::shape));
            }
            let results = memo.outputs(i, || match first {
                Some(first) => node.kernel.run_taking_first(first, &args),
                None => node.kernel.run(&args),
            });
            if let (Some(o), Some(start)) = (observer.as_mut(), start) {
                o.ran(i, start.elapsed());
            }
            let results = results.map_err(|e| match e {
                Error::Op(message) => Error::Node {
                    node: node.name.clone(),
                    op_type: node.op_type.clone(),
                    message,
                },
                other => other,
            })?;
            if results.len() < node.outputs.iter().flatten().count() {
                return Err(Error::Node {
                    node: node.name.clone(),
                    op_type: node.op_type.clone(),
                    message: format!(
                        "produced {} outputs, the graph expects {}",
                        results.len(),
                        node.outputs.len()
                    ),
                });
            }
            for (id, value) in node.outputs.iter().zip(results) {
                if let Some(id) = id {
                    slots[*id] = Some(value);
                }
            }
            for id in frees {
                if let Some(buffer) = slots[*id].take().and_then(Tensor::into_f32_buffer) {
                    crate::kernels::buffers::recycle(buffer);
                }
            }
        }
        let outputs = self
            .outputs
            .iter()
            .enumerate()
            .map(|(k, (name, id))| Ok((name.clone(), self.output(k, self.value(&slots, *id)?))))
            .collect::<Result<Vec<_>>>()?;
        memo.finish();
        Ok(outputs)
    }

    /// Input 0 of `node`, taken out of its slot, when the kernel can reuse its buffer and the
    /// node is its last reader (and reads it once): see [`crate::ops::Kernel::takes_first_input`].
    fn handed_over(&self, node: &Node, frees: &[usize], slots: &mut [Option<Tensor>]) -> Option<Tensor> {
        let id = (*node.inputs.first()?)?;
        let once = node.inputs.iter().filter(|input| **input == Some(id)).count() == 1;
        if node.kernel.takes_first_input() && once && frees.contains(&id) {
            slots[id].take()
        } else {
            None
        }
    }

    fn value<'a>(&'a self, slots: &'a [Option<Tensor>], id: usize) -> Result<&'a Tensor> {
        self.constants[id]
            .as_ref()
            .or(slots[id].as_ref())
            .ok_or_else(|| Error::Model(format!("value '{}' was never computed", self.names[id])))
    }

    fn place_feeds(&self, feeds: Vec<(String, Tensor)>, slots: &mut [Option<Tensor>]) -> Result<()> {
        let expected = || {
            let list: Vec<String> = self.inputs.iter().map(|s| s.describe()).collect();
            format!("the model takes: {}", list.join(", "))
        };
        for (name, tensor) in feeds {
            let Some(pos) = self.inputs.iter().position(|s| s.name == name) else {
                return Err(Error::Input(format!("unknown input '{name}'; {}", expected())));
            };
            self.inputs[pos].check(&tensor)?;
            let id = self.input_ids[pos];
            if slots[id].replace(self.feed(tensor)).is_some() {
                return Err(Error::Input(format!("input '{name}' is given twice")));
            }
        }
        let missing: Vec<&str> = self
            .inputs
            .iter()
            .zip(&self.input_ids)
            .filter(|(_, id)| slots[**id].is_none())
            .map(|(s, _)| s.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(Error::Input(format!(
                "missing input(s) {}; {}",
                missing.join(", "),
                expected()
            )));
        }
        Ok(())
    }
}
