//! The dynamically typed, dynamically shaped tensor every op consumes and produces.
//!
//! Arrays are `ArcArray`s, so cloning a tensor (an initializer read by many nodes, an
//! `Identity`) shares the buffer instead of copying it.

use half::{bf16, f16};
use ndarray::{ArcArray, Axis, IxDyn};

use crate::error::{op_err, Error, Result};

/// A shared, dynamic-rank array.
pub type Array<T> = ArcArray<T, IxDyn>;

/// The element types the runtime computes with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16: float32's exponent with a 7-bit mantissa.
    BF16,
    /// 64-bit float.
    F64,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer.
    I32,
    /// 8-bit signed integer.
    I8,
    /// 8-bit unsigned integer.
    U8,
    /// 16-bit signed integer.
    I16,
    /// 16-bit unsigned integer.
    U16,
    /// 32-bit unsigned integer.
    U32,
    /// 64-bit unsigned integer.
    U64,
    /// Boolean.
    Bool,
    /// float8 with 4 exponent and 3 mantissa bits, no infinities.
    F8E4M3FN,
    /// float8e4m3 without infinities or negative zero.
    F8E4M3FNUZ,
    /// float8 with 5 exponent and 2 mantissa bits (IEEE-like).
    F8E5M2,
    /// float8e5m2 without infinities or negative zero.
    F8E5M2FNUZ,
    /// float8 of 8 exponent bits: powers of two.
    F8E8M0,
    /// float4 with 2 exponent bits and 1 mantissa bit.
    F4E2M1,
    /// 4-bit signed integer.
    I4,
    /// 4-bit unsigned integer.
    U4,
    /// 2-bit signed integer.
    I2,
    /// 2-bit unsigned integer.
    U2,
}

impl DType {
    /// Maps an ONNX `TensorProto.DataType` code to a dtype.
    pub fn from_onnx(code: i32) -> Result<Self> {
        Ok(match code {
            1 => DType::F32,
            2 => DType::U8,
            3 => DType::I8,
            6 => DType::I32,
            7 => DType::I64,
            9 => DType::Bool,
            4 => DType::U16,
            5 => DType::I16,
            10 => DType::F16,
            11 => DType::F64,
            12 => DType::U32,
            13 => DType::U64,
            16 => DType::BF16,
            17 => DType::F8E4M3FN,
            18 => DType::F8E4M3FNUZ,
            19 => DType::F8E5M2,
            20 => DType::F8E5M2FNUZ,
            21 => DType::U4,
            22 => DType::I4,
            23 => DType::F4E2M1,
            24 => DType::F8E8M0,
            25 => DType::U2,
            26 => DType::I2,
            other => {
                return Err(Error::Model(format!("unsupported tensor data type {other} ({})", onnx_type_name(other))))
            }
        })
    }

    /// The ONNX `TensorProto.DataType` code of this dtype.
    pub fn to_onnx(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::U8 => 2,
            DType::I8 => 3,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::U16 => 4,
            DType::I16 => 5,
            DType::F16 => 10,
            DType::F64 => 11,
            DType::U32 => 12,
            DType::U64 => 13,
            DType::BF16 => 16,
            DType::F8E4M3FN => 17,
            DType::F8E4M3FNUZ => 18,
            DType::F8E5M2 => 19,
            DType::F8E5M2FNUZ => 20,
            DType::U4 => 21,
            DType::I4 => 22,
            DType::F4E2M1 => 23,
            DType::F8E8M0 => 24,
            DType::U2 => 25,
            DType::I2 => 26,
        }
    }

    /// True for the float dtypes: float32, float64 and the 16-bit floats.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64) || self.is_half()
    }

    /// True for float16 and bfloat16, which ops compute in float32 and round back.
    pub fn is_half(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }

    /// True for the float8 and float4 dtypes, held as float32 values.
    pub fn is_narrow_float(self) -> bool {
        matches!(self, DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0 | DType::F4E2M1)
    }

    /// Width of one element in bits as ONNX stores it (4 and 2 for the packed sub-byte types).
    pub fn bits(self) -> usize {
        match self {
            DType::F4E2M1 | DType::I4 | DType::U4 => 4,
            DType::I2 | DType::U2 => 2,
            other => other.size() * 8,
        }
    }

    /// Bytes that `count` elements take in ONNX `raw_data` (sub-byte types packed).
    pub fn raw_len(self, count: usize) -> usize {
        crate::narrow::packed_len(self.bits(), count)
    }

    /// Size of one element in bytes (one byte for the sub-byte types, as they are unpacked).
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0 => 1,
            DType::F4E2M1 | DType::I4 | DType::U4 | DType::I2 | DType::U2 => 1,
        }
    }

    /// The ONNX spelling of the type, as in error messages and `rbe-run` output.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::BF16 => "bfloat16",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::Bool => "bool",
            DType::F8E4M3FN => "float8e4m3fn",
            DType::F8E4M3FNUZ => "float8e4m3fnuz",
            DType::F8E5M2 => "float8e5m2",
            DType::F8E5M2FNUZ => "float8e5m2fnuz",
            DType::F8E8M0 => "float8e8m0",
            DType::F4E2M1 => "float4e2m1",
            DType::I4 => "int4",
            DType::U4 => "uint4",
            DType::I2 => "int2",
            DType::U2 => "uint2",
        }
    }
}

/// The ONNX name of a `TensorProto.DataType` code the runtime has no dtype for.
fn onnx_type_name(code: i32) -> &'static str {
    match code {
        0 => "undefined",
        8 => "string",
        14 => "complex64",
        15 => "complex128",
        27 => "float6e2m3",
        28 => "float6e3m2",
        _ => "unknown code",
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor of one of the supported element types.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// float32 data.
    F32(Array<f32>),
    /// float16 data.
    F16(Array<f16>),
    /// float64 data.
    F64(Array<f64>),
    /// int64 data.
    I64(Array<i64>),
    /// int32 data.
    I32(Array<i32>),
    /// int8 data.
    I8(Array<i8>),
    /// uint8 data.
    U8(Array<u8>),
    /// bfloat16 data.
    BF16(Array<bf16>),
    /// int16 data.
    I16(Array<i16>),
    /// uint16 data.
    U16(Array<u16>),
    /// uint32 data.
    U32(Array<u32>),
    /// uint64 data.
    U64(Array<u64>),
    /// bool data.
    Bool(Array<bool>),
    /// Data of a float8, float4, int4/uint4 or int2/uint2 type.
    Narrow(crate::narrow::NarrowTensor),
}

/// Runs `$body` with `$arr` bound to the inner array, whatever the dtype.
/// The body is expanded once per dtype, so it may call generic functions.
#[macro_export]
macro_rules! with_array {
    ($tensor:expr, $arr:ident => $body:expr) => {
        match $tensor {
            $crate::Tensor::F32($arr) => $body,
            $crate::Tensor::F16($arr) => $body,
            $crate::Tensor::F64($arr) => $body,
            $crate::Tensor::I64($arr) => $body,
            $crate::Tensor::I32($arr) => $body,
            $crate::Tensor::I8($arr) => $body,
            $crate::Tensor::U8($arr) => $body,
            $crate::Tensor::BF16($arr) => $body,
            $crate::Tensor::I16($arr) => $body,
            $crate::Tensor::U16($arr) => $body,
            $crate::Tensor::U32($arr) => $body,
            $crate::Tensor::U64($arr) => $body,
            $crate::Tensor::Bool($arr) => $body,
            $crate::Tensor::Narrow(narrow) => $crate::with_narrow_array!(narrow, $arr => $body),
        }
    };
}

/// An element type that a [`Tensor`] can hold.
pub trait Element: Copy + Default + PartialEq + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    /// The matching dtype.
    const DTYPE: DType;
    /// Wraps an array of this type into a tensor.
    fn wrap(array: Array<Self>) -> Tensor;
    /// Borrows the array if the tensor holds this type.
    fn unwrap(tensor: &Tensor) -> Option<&Array<Self>>;
}

macro_rules! impl_element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            fn wrap(array: Array<Self>) -> Tensor {
                Tensor::$variant(array)
            }
            fn unwrap(tensor: &Tensor) -> Option<&Array<Self>> {
                match tensor {
                    Tensor::$variant(a) => Some(a),
                    _ => None,
                }
            }
        }
    };
}
impl_element!(f32, F32);
impl_element!(f16, F16);
impl_element!(f64, F64);
impl_element!(i64, I64);
impl_element!(i32, I32);
impl_element!(i8, I8);
impl_element!(u8, U8);
impl_element!(bf16, BF16);
impl_element!(i16, I16);
impl_element!(u16, U16);
impl_element!(u32, U32);
impl_element!(u64, U64);
impl_element!(bool, Bool);

impl<T: Element> From<Array<T>> for Tensor {
    fn from(array: Array<T>) -> Self {
        T::wrap(array)
    }
}

impl<T: Element> From<ndarray::ArrayD<T>> for Tensor {
    fn from(array: ndarray::ArrayD<T>) -> Self {
        T::wrap(array.into_shared())
    }
}

impl Tensor {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F16(_) => DType::F16,
            Tensor::F64(_) => DType::F64,
            Tensor::I64(_) => DType::I64,
            Tensor::I32(_) => DType::I32,
            Tensor::I8(_) => DType::I8,
            Tensor::U8(_) => DType::U8,
            Tensor::BF16(_) => DType::BF16,
            Tensor::I16(_) => DType::I16,
            Tensor::U16(_) => DType::U16,
            Tensor::U32(_) => DType::U32,
            Tensor::U64(_) => DType::U64,
            Tensor::Bool(_) => DType::Bool,
            Tensor::Narrow(n) => n.dtype(),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        with_array!(self, a => a.shape())
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape().len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Borrows the array as `T`, or fails naming the expected and actual dtypes.
    pub fn array<T: Element>(&self) -> Result<&Array<T>> {
        T::unwrap(self).ok_or_else(|| {
            op_err(format!("expected a {} tensor, got {}", T::DTYPE, self.dtype()))
        })
    }

    /// Borrows float32 data.
    pub fn as_f32(&self) -> Result<&Array<f32>> {
        self.array::<f32>()
    }

    /// Borrows int64 data.
    pub fn as_i64(&self) -> Result<&Array<i64>> {
        self.array::<i64>()
    }

    /// Reads an integer tensor (int64 or int32) as a flat `Vec<i64>`: shapes, axes, indices.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        match self {
            Tensor::I64(a) => Ok(a.iter().copied().collect()),
            Tensor::I32(a) => Ok(a.iter().map(|&v| v as i64).collect()),
            other => Err(op_err(format!("expected an int64 or int32 tensor, got {}", other.dtype()))),
        }
    }

    /// Reads a single-element numeric tensor as f64 (scalars of any numeric dtype).
    pub fn scalar_f64(&self) -> Result<f64> {
        if self.len() != 1 {
            return Err(op_err(format!("expected a scalar, got shape {:?}", self.shape())));
        }
        let wide = crate::ops::cast::cast(self, DType::F64);
        Ok(wide.array::<f64>()?.iter().next().copied().unwrap_or_default())
    }

    /// The whole f32 allocation behind this tensor, when it is an f32 tensor holding the only
    /// reference to it (for reuse; `None` for other dtypes and shared buffers).
    pub fn into_f32_buffer(self) -> Option<Vec<f32>> {
        match self {
            Tensor::F32(a) => a.try_into_owned_nocopy().ok().map(|a| a.into_raw_vec_and_offset().0),
            _ => None,
        }
    }

    /// Builds a tensor from a shape and a flat vector, checking that they agree.
    pub fn from_vec<T: Element>(shape: &[usize], data: Vec<T>) -> Result<Tensor> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(op_err(format!(
                "shape {shape:?} needs {expected} elements, got {}",
                data.len()
            )));
        }
        ndarray::ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(Tensor::from)
            .map_err(|e| op_err(e.to_string()))
    }

    /// The same elements under another shape with the same element count. Shares the buffer
    /// when the tensor is in standard (row-major, contiguous) layout or the shapes differ only
    /// by axes of length 1; copies otherwise.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let len = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if len != Some(self.len()) {
            return Err(op_err(format!(
                "cannot reshape {:?} ({} elements) to {shape:?}",
                self.shape(),
                self.len()
            )));
        }
        with_array!(self, a => reshape_array(a, shape).map(Tensor::from))
    }

    /// The same tensor with its elements in row-major order: a copy when it is a strided view
    /// (a folded `Transpose`), so readers of a constant never re-layout it at every run.
    pub fn into_standard_layout(self) -> Result<Tensor> {
        if with_array!(&self, a => a.is_standard_layout()) {
            return Ok(self);
        }
        with_array!(&self, a => Ok(Tensor::from(row_major(a))))
    }

    /// A 0-d tensor holding one value.
    pub fn scalar<T: Element>(value: T) -> Tensor {
        T::wrap(ndarray::arr0(value).into_dyn().into_shared())
    }
}

fn reshape_array<T: Copy + Send + Sync>(a: &Array<T>, shape: &[usize]) -> Result<Array<T>> {
    if let Some(same) = reshape_unit_axes(a, shape) {
        return Ok(same);
    }
    // Strides that allow the new shape without moving an element (a split of a contiguous
    // axis, a merge of axes laid out one after the other) keep the data in place.
    let in_place = a.is_standard_layout() || reshapes_in_place(a.shape(), a.strides(), shape);
    let source = if in_place { a.clone() } else { row_major(a) };
    source
        .into_shape_clone(IxDyn(shape))
        .map_err(|e| op_err(format!("cannot reshape to {shape:?}: {e}")))
}

/// Whether `shape` can take the elements of an array of `dims` and `strides` in row-major
/// order without moving one (the test ndarray's `to_shape` makes, without its copy when the
/// answer is no): old and new axes (length-1 ones aside) fall into groups of equal size, and
/// within each old group every axis steps over exactly the next one. The element counts
/// agree (checked by the caller); an empty array answers no.
fn reshapes_in_place(dims: &[usize], strides: &[isize], shape: &[usize]) -> bool {
    let old: Vec<(usize, isize)> = dims.iter().zip(strides).filter(|(&d, _)| d != 1).map(|(&d, &s)| (d, s)).collect();
    let new: Vec<usize> = shape.iter().copied().filter(|&d| d != 1).collect();
    if old.iter().any(|&(d, _)| d == 0) {
        return false;
    }
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        let (first, mut have, mut want) = (i, old[i].0, new[j]);
        while have != want {
            if have < want {
                i += 1;
                let Some(&(d, _)) = old.get(i) else { return false };
                have *= d;
            } else {
                j += 1;
                let Some(&d) = new.get(j) else { return false };
                want *= d;
            }
        }
        if (first..i).any(|a| old[a].1 != old[a + 1].1 * old[a + 1].0 as isize) {
            return false;
        }
        i += 1;
        j += 1;
    }
    i == old.len() && j == new.len()
}

/// A row-major copy of `a`.
fn row_major<T: Copy + Send + Sync>(a: &Array<T>) -> Array<T> {
    let data = crate::kernels::layout::to_row_major(a.view());
    // `data` holds exactly `a`'s elements, so the shape always fits.
    let copy = ndarray::ArrayD::from_shape_vec(a.raw_dim(), data);
    copy.unwrap_or_else(|_| a.as_standard_layout().into_owned()).into_shared()
}

/// `a` under `shape` without a copy, whatever its strides, when the two shapes differ only by
/// axes of length 1 (an identity Reshape, Squeeze, Unsqueeze): `None` otherwise.
fn reshape_unit_axes<T>(a: &Array<T>, shape: &[usize]) -> Option<Array<T>> {
    let kept = |dims: &[usize]| dims.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    if kept(a.shape()) != kept(shape) {
        return None;
    }
    let mut same = a.clone();
    for axis in (0..a.ndim()).rev().filter(|&i| a.len_of(Axis(i)) == 1) {
        same = same.remove_axis(Axis(axis));
    }
    for axis in (0..shape.len()).filter(|&i| shape[i] == 1) {
        same = same.insert_axis(Axis(axis));
    }
    Some(same)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshapes_that_add_or_drop_unit_axes_keep_the_strides() {
        let t = Tensor::from_vec(&[2, 1, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        let transposed = Tensor::F32(t.as_f32().unwrap().clone().permuted_axes(IxDyn(&[2, 1, 0])));
        let y = transposed.reshape(&[1, 3, 2, 1]).unwrap();
        let a = y.as_f32().unwrap();
        assert_eq!(a.shape(), &[1, 3, 2, 1]);
        assert!(!a.is_standard_layout(), "a view of the transposed buffer, not a copy");
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(transposed.reshape(&[3, 2]).unwrap().as_f32().unwrap().as_ptr(), a.as_ptr());
    }

    #[test]
    fn a_reshape_the_strides_allow_keeps_the_data_in_place() {
        // Columns 2..6 of a 3x8 matrix: rows of 4 contiguous values, 8 apart. Splitting the
        // row into 2x2 needs no copy; merging the rows does.
        let t = Tensor::from_vec(&[3, 8], (0..24).map(|v| v as f32).collect()).unwrap();
        let columns = Tensor::F32(t.as_f32().unwrap().clone().slice_move(ndarray::s![.., 2..6]).into_dyn());
        let split = columns.reshape(&[3, 2, 2]).unwrap();
        let a = split.as_f32().unwrap();
        assert_eq!(a.as_ptr(), columns.as_f32().unwrap().as_ptr(), "a view of the same buffer");
        assert_eq!(a.strides(), &[8, 2, 1]);
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), [2., 3., 4., 5., 10., 11., 12., 13., 18., 19., 20., 21.]);
        let merged = columns.reshape(&[12]).unwrap();
        assert!(merged.as_f32().unwrap().is_standard_layout());
        assert_eq!(merged.as_f32().unwrap().iter().copied().collect::<Vec<_>>(), a.iter().copied().collect::<Vec<_>>());
    }

    #[test]
    fn the_in_place_test_agrees_with_ndarrays_reshape() {
        let base = ndarray::Array::from_shape_vec(IxDyn(&[4, 6, 2]), (0..48).map(|v| v as f32).collect()).unwrap();
        let views = [
            base.view(),
            base.slice(ndarray::s![.., 1..5, ..]).into_dyn(),
            base.slice(ndarray::s![1..3, .., 0..1]).into_dyn(),
            base.view().permuted_axes(IxDyn(&[1, 0, 2])),
            base.slice(ndarray::s![.., ..;2, ..]).into_dyn(),
        ];
        for v in views {
            let len = v.len();
            for target in [vec![len], vec![len / 2, 2], vec![2, len / 2], vec![1, len / 4, 1, 4], vec![len / 8, 2, 4]] {
                if target.iter().product::<usize>() != len {
                    continue;
                }
                let ndarray_says = v.to_shape(IxDyn(&target)).unwrap().is_view();
                assert_eq!(reshapes_in_place(v.shape(), v.strides(), &target), ndarray_says, "{:?} {:?} -> {target:?}", v.shape(), v.strides());
            }
        }
    }

    #[test]
    fn a_strided_view_is_copied_to_row_major() {
        let t = Tensor::from_vec(&[2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        let transposed = Tensor::F32(t.as_f32().unwrap().clone().permuted_axes(IxDyn(&[1, 0])));
        assert!(!transposed.as_f32().unwrap().is_standard_layout());
        let standard = transposed.into_standard_layout().unwrap();
        let a = standard.as_f32().unwrap();
        assert!(a.is_standard_layout());
        assert_eq!(a.shape(), &[3, 2]);
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), vec![0., 3., 1., 4., 2., 5.]);
    }

    /// A folded `Transpose` of a weight (onnxruntime's model builder stores a tied embedding as
    /// the head's `[hidden, vocab]` matrix and gathers from its transpose) is kept row-major, so
    /// the Gather does not re-layout the whole table at every run.
    #[test]
    fn folded_constants_are_row_major() {
        use crate::onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto};
        use crate::onnx::{tensor_to_proto, ExternalData};
        let w = Tensor::from_vec(&[4, 8], (0..32).map(|v| v as f32).collect()).unwrap();
        let node = |op: &str, inputs: &[&str], output: &str| NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        };
        let info = |name: &str| ValueInfoProto { name: name.into(), ..Default::default() };
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(GraphProto {
                node: vec![node("Transpose", &["w"], "table"), node("Gather", &["table", "ids"], "y")],
                input: vec![info("ids")],
                output: vec![info("y")],
                initializer: vec![tensor_to_proto("w", &w)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let session = crate::Session::from_model(&model, ExternalData::Refused).unwrap();
        let table = session.graph().constant("table").expect("folded");
        assert!(table.as_f32().unwrap().is_standard_layout());
        let y = session.run(vec![("ids".into(), Tensor::from_vec(&[1], vec![2i64]).unwrap())]).unwrap().remove(0).1;
        assert_eq!(y.as_f32().unwrap().iter().copied().collect::<Vec<_>>(), vec![2., 10., 18., 26.]);
    }

    #[test]
    fn only_a_unique_f32_tensor_gives_up_its_buffer() {
        let t = Tensor::from_vec(&[2, 3], vec![1f32; 6]).unwrap();
        let shared = t.clone();
        assert!(t.into_f32_buffer().is_none(), "another reference is alive");
        assert_eq!(shared.into_f32_buffer().map(|v| v.len()), Some(6));
        assert!(Tensor::from_vec(&[2], vec![1i64, 2]).unwrap().into_f32_buffer().is_none());
    }

    #[test]
    fn reshape_shares_contiguous_buffers_and_copies_strided_ones() {
        let t = Tensor::from_vec(&[2, 3], (0..6).collect::<Vec<i64>>()).unwrap();
        let r = t.reshape(&[3, 2]).unwrap();
        assert_eq!(r.as_i64().unwrap().as_ptr(), t.as_i64().unwrap().as_ptr());
        let transposed = Tensor::I64(t.as_i64().unwrap().clone().reversed_axes());
        let r = transposed.reshape(&[6]).unwrap();
        assert_eq!(r.to_i64_vec().unwrap(), vec![0, 3, 1, 4, 2, 5]);
        assert!(t.reshape(&[4]).is_err());
        assert!(t.reshape(&[usize::MAX, 2]).is_err());
    }
}
