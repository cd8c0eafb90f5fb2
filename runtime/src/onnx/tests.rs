//! Decoding `TensorProto`s of every dtype, from raw bytes and from the typed fields.

use half::{bf16, f16};

use super::proto::TensorProto;
use super::{tensor_from_proto, tensor_to_proto, ExternalData};
use crate::tensor::{DType, Tensor};

fn decode(t: &TensorProto) -> Tensor {
    tensor_from_proto(t, ExternalData::Refused).unwrap()
}

fn typed(dtype: DType, dims: &[i64]) -> TensorProto {
    TensorProto { name: "t".into(), dims: dims.to_vec(), data_type: dtype.to_onnx(), ..Default::default() }
}

#[test]
fn every_dtype_round_trips_through_raw_data() {
    let tensors = [
        Tensor::from_vec(&[2], vec![1.5f32, -2.0]).unwrap(),
        Tensor::from_vec(&[2], vec![f16::from_f32(1.5), f16::NAN]).unwrap(),
        Tensor::from_vec(&[2], vec![bf16::from_f32(-3.25), bf16::INFINITY]).unwrap(),
        Tensor::from_vec(&[2], vec![1.0f64, -1e300]).unwrap(),
        Tensor::from_vec(&[2], vec![i64::MIN, 7]).unwrap(),
        Tensor::from_vec(&[2], vec![i32::MIN, 7]).unwrap(),
        Tensor::from_vec(&[2], vec![i16::MIN, i16::MAX]).unwrap(),
        Tensor::from_vec(&[2], vec![-128i8, 127]).unwrap(),
        Tensor::from_vec(&[2], vec![u64::MAX, 1]).unwrap(),
        Tensor::from_vec(&[2], vec![u32::MAX, 1]).unwrap(),
        Tensor::from_vec(&[2], vec![u16::MAX, 1]).unwrap(),
        Tensor::from_vec(&[2], vec![255u8, 0]).unwrap(),
        Tensor::from_vec(&[2], vec![true, false]).unwrap(),
    ];
    for t in tensors {
        let proto = tensor_to_proto("t", &t);
        assert_eq!(proto.raw_data.len(), t.len() * t.dtype().size(), "{}", t.dtype());
        let back = decode(&proto);
        assert_eq!(back.dtype(), t.dtype());
        // Compare bits so that NaN counts as equal to itself.
        assert_eq!(tensor_to_proto("t", &back).raw_data, proto.raw_data, "{}", t.dtype());
    }
}

#[test]
fn sixteen_bit_types_read_int32_data_and_unsigned_wide_types_read_uint64_data() {
    let mut p = typed(DType::BF16, &[2]);
    p.int32_data = vec![0x3fc0, 0xff80];
    assert_eq!(decode(&p), Tensor::from_vec(&[2], vec![bf16::from_f32(1.5), bf16::NEG_INFINITY]).unwrap());
    let mut p = typed(DType::I16, &[2]);
    p.int32_data = vec![-32768, 5];
    assert_eq!(decode(&p), Tensor::from_vec(&[2], vec![i16::MIN, 5]).unwrap());
    let mut p = typed(DType::U16, &[1]);
    p.int32_data = vec![65535];
    assert_eq!(decode(&p), Tensor::from_vec(&[1], vec![u16::MAX]).unwrap());
    let mut p = typed(DType::U32, &[1]);
    p.uint64_data = vec![u32::MAX as u64];
    assert_eq!(decode(&p), Tensor::from_vec(&[1], vec![u32::MAX]).unwrap());
    let mut p = typed(DType::U64, &[2]);
    p.uint64_data = vec![u64::MAX, 3];
    assert_eq!(decode(&p), Tensor::from_vec(&[2], vec![u64::MAX, 3]).unwrap());
}

#[test]
fn wrong_element_counts_and_unknown_types_are_errors() {
    let mut p = typed(DType::U64, &[3]);
    p.uint64_data = vec![1, 2];
    assert!(tensor_from_proto(&p, ExternalData::Refused).is_err());
    let mut p = typed(DType::U32, &[2]);
    p.int32_data = vec![1, 2];
    assert!(tensor_from_proto(&p, ExternalData::Refused).is_err(), "uint32 lives in uint64_data");
    let mut p = typed(DType::BF16, &[2]);
    p.raw_data = vec![0u8; 3].into();
    assert!(tensor_from_proto(&p, ExternalData::Refused).is_err());
    let p = TensorProto { data_type: 27, dims: vec![1], ..Default::default() };
    let e = tensor_from_proto(&p, ExternalData::Refused).unwrap_err().to_string();
    assert!(e.contains("unsupported tensor data type 27 (float6e2m3)"), "{e}");
    let mut p = typed(DType::I4, &[3]);
    p.raw_data = vec![0u8; 1].into();
    assert!(tensor_from_proto(&p, ExternalData::Refused).is_err(), "3 int4 need 2 bytes");
    let mut p = typed(DType::I4, &[3]);
    p.int32_data = vec![0x9f, 0x07];
    let t = tensor_from_proto(&p, ExternalData::Refused).unwrap();
    assert_eq!(crate::ops::cast::cast(&t, DType::I32).array::<i32>().unwrap().as_slice().unwrap(), &[-1, -7, 7]);
    let mut p = typed(DType::F8E4M3FN, &[2]);
    p.raw_data = vec![0x38u8, 0xff].into();
    let back = tensor_from_proto(&p, ExternalData::Refused).unwrap();
    assert_eq!(tensor_to_proto("t", &back).raw_data, p.raw_data, "NaN and 1.0 keep their codes");
}
