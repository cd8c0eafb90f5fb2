//! Typed access to a node's attributes.

use crate::error::{Error, Result};
use crate::onnx::proto::{AttributeProto, GraphProto, NodeProto};
use crate::tensor::Tensor;

/// A node's attributes, looked up by name.
pub struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    /// Wraps a node's attribute list.
    pub fn new(node: &'a NodeProto) -> Self {
        Self { node }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn bad(&self, name: &str, what: &str) -> Error {
        Error::Model(format!(
            "node '{}' ({}): attribute '{name}' {what}",
            self.node.name, self.node.op_type
        ))
    }

    /// True when the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// An integer attribute, if present.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).map(|a| a.i)
    }

    /// An integer attribute, or `default`.
    pub fn int_or(&self, name: &str, default: i64) -> i64 {
        self.int(name).unwrap_or(default)
    }

    /// A float attribute, or `default`.
    pub fn float_or(&self, name: &str, default: f32) -> f32 {
        self.get(name).map(|a| a.f).unwrap_or(default)
    }

    /// An integer-list attribute, if present.
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }

    /// A float-list attribute, if present.
    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.get(name).map(|a| a.floats.clone())
    }

    /// A string attribute, if present (must be UTF-8).
    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.to_vec())
                .map(Some)
                .map_err(|_| self.bad(name, "is not UTF-8")),
        }
    }

    /// A tensor attribute, if present, decoded.
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
        match self.get(name).and_then(|a| a.t.as_ref()) {
            None => Ok(None),
            Some(t) => crate::onnx::tensor_from_proto(t, crate::onnx::ExternalData::Refused).map(Some),
        }
    }

    /// A graph attribute (the branches of `If`), if present.
    pub fn graph(&self, name: &str) -> Option<&'a GraphProto> {
        self.get(name).and_then(|a| a.g.as_ref())
    }

    /// A required integer attribute.
    pub fn require_int(&self, name: &str) -> Result<i64> {
        self.int(name).ok_or_else(|| self.bad(name, "is required"))
    }
}
