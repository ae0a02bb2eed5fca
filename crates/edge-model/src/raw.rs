//! Tensor contents as raw bytes, the layout both the binary tensor extension
//! of the REST protocol and gRPC's `raw_input_contents` /
//! `raw_output_contents` use: elements in row-major order, little-endian,
//! BOOL as one byte, and BYTES as a 4-byte little-endian length before each
//! element.

use crate::error::ModelError;
use crate::model::DataType;
use tract_onnx::prelude::{Datum, Tensor, f16, tract_ndarray};

/// Bytes one element takes, or `None` for BYTES, whose elements vary.
pub fn element_size(dt: DataType) -> Option<usize> {
    Some(match dt {
        DataType::Bool | DataType::Int8 | DataType::Uint8 => 1,
        DataType::Int16 | DataType::Uint16 | DataType::Fp16 => 2,
        DataType::Int32 | DataType::Uint32 | DataType::Fp32 => 4,
        DataType::Int64 | DataType::Uint64 | DataType::Fp64 => 8,
        DataType::Bytes => return None,
    })
}

/// The tensor of type `dt` and shape `shape` that `raw` holds. `name` is the
/// input's, for the errors.
pub fn decode(name: &str, dt: DataType, shape: &[usize], raw: &[u8]) -> Result<Tensor, ModelError> {
    let count = shape
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(*d))
        .ok_or_else(|| ModelError::bad(format!("input {name:?}: shape {shape:?} is too large")))?;
    let Some(size) = element_size(dt) else {
        return decode_bytes(name, shape, count, raw);
    };
    if count.checked_mul(size) != Some(raw.len()) {
        return Err(ModelError::bad(format!(
            "input {name:?}: shape {shape:?} of {} needs {} bytes, the binary data has {}",
            dt.as_str(),
            count.saturating_mul(size),
            raw.len()
        )));
    }
    match dt {
        DataType::Bool => {
            let mut values = Vec::with_capacity(count);
            for (i, b) in raw.iter().enumerate() {
                values.push(match b {
                    0 => false,
                    1 => true,
                    other => {
                        return Err(ModelError::bad(format!(
                            "input {name:?}: element {i} is {other}, not a BOOL (0 or 1)"
                        )));
                    }
                });
            }
            shaped(name, shape, &values)
        }
        DataType::Int8 => fixed(name, shape, raw, |b: [u8; 1]| b[0] as i8),
        DataType::Uint8 => shaped(name, shape, raw),
        DataType::Int16 => fixed(name, shape, raw, i16::from_le_bytes),
        DataType::Uint16 => fixed(name, shape, raw, u16::from_le_bytes),
        DataType::Fp16 => fixed(name, shape, raw, |b| f16::from_bits(u16::from_le_bytes(b))),
        DataType::Int32 => fixed(name, shape, raw, i32::from_le_bytes),
        DataType::Uint32 => fixed(name, shape, raw, u32::from_le_bytes),
        DataType::Fp32 => fixed(name, shape, raw, f32::from_le_bytes),
        DataType::Int64 => fixed(name, shape, raw, i64::from_le_bytes),
        DataType::Uint64 => fixed(name, shape, raw, u64::from_le_bytes),
        DataType::Fp64 => fixed(name, shape, raw, f64::from_le_bytes),
        DataType::Bytes => decode_bytes(name, shape, count, raw),
    }
}

/// A tensor of numbers from their little-endian bytes. On a little-endian
/// machine those bytes are already the tensor's memory, so they are copied
/// once, with no conversion (a 600 KB image went through a `Vec` and a
/// second copy before: a fifth of a request's cost on the server).
fn fixed<T: Datum + Copy, const N: usize>(
    name: &str,
    shape: &[usize],
    raw: &[u8],
    conv: impl Fn([u8; N]) -> T,
) -> Result<Tensor, ModelError> {
    if cfg!(target_endian = "little") {
        // SAFETY: `T` is a fixed-size integer or float type (the callers'
        // `conv` is its `from_le_bytes`), for which every bit pattern is a
        // valid value; `decode` checked `raw` holds exactly the shape's
        // elements, and `from_raw` copies it into storage aligned for `T`.
        return unsafe { Tensor::from_raw::<T>(shape, raw) }
            .map_err(|e| ModelError::bad(format!("input {name:?}: {e}")));
    }
    let values: Vec<T> = raw
        .chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            conv(b)
        })
        .collect();
    shaped(name, shape, &values)
}

fn shaped<T: Datum + Copy>(
    name: &str,
    shape: &[usize],
    values: &[T],
) -> Result<Tensor, ModelError> {
    Tensor::from_shape(shape, values).map_err(|e| ModelError::bad(format!("input {name:?}: {e}")))
}

/// BYTES elements become tract strings, the element type ONNX string
/// inputs have; an element that is not UTF-8 is refused.
fn decode_bytes(
    name: &str,
    shape: &[usize],
    count: usize,
    mut raw: &[u8],
) -> Result<Tensor, ModelError> {
    let mut values = Vec::with_capacity(count.min(raw.len() / 4));
    while !raw.is_empty() {
        let i = values.len();
        let (len, rest) = raw.split_first_chunk::<4>().ok_or_else(|| {
            ModelError::bad(format!(
                "input {name:?}: element {i} has a truncated 4-byte length"
            ))
        })?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(ModelError::bad(format!(
                "input {name:?}: element {i} claims {len} bytes, {} are left",
                rest.len()
            )));
        }
        let (item, rest) = rest.split_at(len);
        let text = std::str::from_utf8(item).map_err(|e| {
            ModelError::bad(format!(
                "input {name:?}: element {i} is not UTF-8 text: {e}"
            ))
        })?;
        values.push(text.to_string());
        raw = rest;
    }
    if values.len() != count {
        return Err(ModelError::bad(format!(
            "input {name:?}: shape {shape:?} needs {count} BYTES elements, the binary data has {}",
            values.len()
        )));
    }
    strings(name, shape, values)
}

/// A tensor of strings of the given shape.
pub fn strings(name: &str, shape: &[usize], values: Vec<String>) -> Result<Tensor, ModelError> {
    tract_ndarray::ArrayD::from_shape_vec(shape, values)
        .map(Tensor::from)
        .map_err(|e| ModelError::bad(format!("input {name:?}: {e}")))
}

/// The raw bytes of `t`, read as `dt` (the protocol type of its datum type).
pub fn encode(t: &Tensor, dt: DataType) -> tract_onnx::prelude::TractResult<Vec<u8>> {
    Ok(match dt {
        DataType::Bool => t
            .to_plain_array_view::<bool>()?
            .iter()
            .map(|b| u8::from(*b))
            .collect(),
        DataType::Int8 => le(t, |x: i8| x.to_le_bytes())?,
        DataType::Uint8 => le(t, |x: u8| [x])?,
        DataType::Int16 => le(t, i16::to_le_bytes)?,
        DataType::Uint16 => le(t, u16::to_le_bytes)?,
        DataType::Fp16 => le(t, |x: f16| x.to_bits().to_le_bytes())?,
        DataType::Int32 => le(t, i32::to_le_bytes)?,
        DataType::Uint32 => le(t, u32::to_le_bytes)?,
        DataType::Fp32 => le(t, f32::to_le_bytes)?,
        DataType::Int64 => le(t, i64::to_le_bytes)?,
        DataType::Uint64 => le(t, u64::to_le_bytes)?,
        DataType::Fp64 => le(t, f64::to_le_bytes)?,
        DataType::Bytes => {
            let view = t.to_plain_array_view::<String>()?;
            let mut out = Vec::with_capacity(view.iter().map(|s| s.len() + 4).sum());
            for s in view.iter() {
                let len = u32::try_from(s.len()).map_err(|_| {
                    tract_onnx::prelude::TractError::msg("a BYTES element over 4 GiB")
                })?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            out
        }
    })
}

fn le<T: Datum + Copy, const N: usize>(
    t: &Tensor,
    conv: impl Fn(T) -> [u8; N],
) -> tract_onnx::prelude::TractResult<Vec<u8>> {
    let view = t.to_plain_array_view::<T>()?;
    let mut out = Vec::with_capacity(view.len() * N);
    for x in view.iter() {
        out.extend_from_slice(&conv(*x));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_fixed_type_round_trips() {
        let shape = [2, 3];
        for dt in DataType::ALL {
            let Some(size) = element_size(dt) else {
                continue;
            };
            let raw: Vec<u8> = (0..6 * size)
                .map(|i| {
                    if dt == DataType::Bool {
                        (i % 2) as u8
                    } else {
                        i as u8
                    }
                })
                .collect();
            let t = decode("x", dt, &shape, &raw).unwrap();
            assert_eq!(t.shape(), &shape);
            assert_eq!(encode(&t, dt).unwrap(), raw, "{}", dt.as_str());
        }
    }

    #[test]
    fn nan_and_infinities_keep_their_bits() {
        let values = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0];
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = decode("x", DataType::Fp32, &[4], &raw).unwrap();
        let got = t.to_plain_array_view::<f32>().unwrap();
        assert!(got[0].is_nan());
        assert_eq!(got[1], f32::INFINITY);
        assert_eq!(got[2], f32::NEG_INFINITY);
        assert_eq!(encode(&t, DataType::Fp32).unwrap(), raw);
    }

    #[test]
    fn bytes_elements_are_length_prefixed() {
        let mut raw = Vec::new();
        for s in ["héllo", "", "edge"] {
            raw.extend_from_slice(&(s.len() as u32).to_le_bytes());
            raw.extend_from_slice(s.as_bytes());
        }
        let t = decode("x", DataType::Bytes, &[3], &raw).unwrap();
        let got = t.to_plain_array_view::<String>().unwrap();
        assert_eq!(
            got.iter().map(String::as_str).collect::<Vec<_>>(),
            ["héllo", "", "edge"]
        );
        assert_eq!(encode(&t, DataType::Bytes).unwrap(), raw);
    }

    #[test]
    fn wrong_sizes_and_bad_elements_say_what_is_wrong() {
        let err = |r: Result<Tensor, ModelError>| r.unwrap_err().to_string();
        let e = err(decode("x", DataType::Fp32, &[1, 4], &[0; 15]));
        assert!(e.contains("needs 16 bytes") && e.contains("has 15"), "{e}");
        let e = err(decode("x", DataType::Bool, &[1], &[2]));
        assert!(e.contains("not a BOOL"), "{e}");
        let e = err(decode("x", DataType::Bytes, &[1], &[9, 0, 0, 0, b'a']));
        assert!(e.contains("claims 9 bytes"), "{e}");
        let e = err(decode("x", DataType::Bytes, &[2], &[1, 0, 0, 0, b'a']));
        assert!(e.contains("needs 2 BYTES elements"), "{e}");
        let e = err(decode("x", DataType::Bytes, &[1], &[1, 0, 0, 0, 0xff]));
        assert!(e.contains("not UTF-8"), "{e}");
        let e = err(decode("x", DataType::Fp32, &[usize::MAX, 2], &[]));
        assert!(e.contains("too large"), "{e}");
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(
            raw in proptest::collection::vec(any::<u8>(), 0..64),
            dims in proptest::collection::vec(0usize..5, 0..3),
            dt in proptest::sample::select(DataType::ALL.to_vec()),
        ) {
            if let Ok(t) = decode("x", dt, &dims, &raw) {
                prop_assert_eq!(t.shape(), dims.as_slice());
                prop_assert_eq!(encode(&t, dt).unwrap(), raw);
            }
        }
    }
}
