//! What the graph declares about its inputs, and checking caller-supplied tensors against it.

use crate::error::{Error, Result};
use crate::onnx::proto::{type_proto, ValueInfoProto};
use crate::onnx::proto::tensor_shape_proto::dimension::Value as DimValue;
use crate::tensor::{DType, Tensor};

/// One declared dimension of a graph input.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named symbolic size such as `batch` or `sequence`.
    Symbolic(String),
    /// Declared, but without a size or a name.
    Unknown,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A graph input as declared in the model: name, element type and shape, when known.
#[derive(Clone, Debug)]
pub struct InputSpec {
    /// The input's name.
    pub name: String,
    /// The declared element type, if any.
    pub dtype: Option<DType>,
    /// The declared shape, if any.
    pub dims: Option<Vec<Dim>>,
}

impl InputSpec {
    /// Reads the declaration from a `ValueInfoProto`.
    pub fn from_value_info(info: &ValueInfoProto) -> Result<Self> {
        let tensor_type = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => Some(t),
            None => None,
            Some(_) => {
                return Err(Error::Model(format!(
                    "input '{}' is not a tensor (sequences, maps and optionals are not supported)",
                    info.name
                )))
            }
        };
        let dtype = match tensor_type.map(|t| t.elem_type) {
            None | Some(0) => None,
            Some(code) => Some(DType::from_onnx(code)?),
        };
        let dims = tensor_type.and_then(|t| t.shape.as_ref()).map(|shape| {
            shape
                .dim
                .iter()
                .map(|d| match &d.value {
                    Some(DimValue::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                    Some(DimValue::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
                    _ => Dim::Unknown,
                })
                .collect()
        });
        Ok(Self { name: info.name.clone(), dtype, dims })
    }

    /// A human description: `input_ids int64 [batch, sequence]`.
    pub fn describe(&self) -> String {
        let dtype = self.dtype.map_or("?", |d| d.name());
        match &self.dims {
            Some(dims) => {
                let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
                format!("{} {dtype} [{}]", self.name, dims.join(", "))
            }
            None => format!("{} {dtype}", self.name),
        }
    }

    /// Checks a supplied tensor's dtype, rank and fixed dimensions against the declaration.
    pub fn check(&self, tensor: &Tensor) -> Result<()> {
        if let Some(dtype) = self.dtype {
            if tensor.dtype() != dtype {
                return Err(Error::Input(format!(
                    "input '{}' must be {dtype}, got {} (expected {})",
                    self.name,
                    tensor.dtype(),
                    self.describe()
                )));
            }
        }
        if let Some(dims) = &self.dims {
            let shape = tensor.shape();
            let fixed_ok = dims
                .iter()
                .zip(shape)
                .all(|(d, &s)| !matches!(d, Dim::Fixed(n) if *n != s));
            if dims.len() != shape.len() || !fixed_ok {
                return Err(Error::Input(format!(
                    "input '{}' has shape {shape:?}, expected {}",
                    self.name,
                    self.describe()
                )));
            }
        }
        Ok(())
    }
}
