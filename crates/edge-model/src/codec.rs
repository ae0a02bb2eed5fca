//! Inference requests and answers as every protocol has them (REST JSON,
//! REST binary, gRPC), checked against a model and converted to and from
//! tract tensors with every check a bad request needs; and the JSON bodies
//! of the Open Inference Protocol.

use crate::error::ModelError;
use crate::model::{DataType, Model, TensorInfo};
use crate::raw;
use bytes::Bytes;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use tract_onnx::prelude::{Datum, Tensor, f16};

/// An inference request, whatever protocol brought it.
#[derive(Debug)]
pub struct Request {
    pub id: Option<String>,
    pub inputs: Vec<Input>,
    /// The outputs to answer, in order; every output when `None`.
    pub outputs: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct Input {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub contents: Contents,
}

/// An input's elements as they came.
#[derive(Debug)]
pub enum Contents {
    /// JSON `data`: numbers, booleans or strings, nested or flat.
    Json(Value),
    /// Little-endian elements, see [`raw`].
    Raw(Bytes),
    Missing,
}

/// The JSON request body (`POST .../infer`).
#[derive(Debug, Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    pub inputs: Vec<InputTensor>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub data: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Serialize)]
pub struct InferResponse<'a> {
    pub model_name: &'a str,
    pub model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor<'a>>,
}

#[derive(Debug, Serialize)]
pub struct OutputTensor<'a> {
    pub name: &'a str,
    pub datatype: &'static str,
    pub shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
}

/// Output elements as JSON, flat in row-major order.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Data {
    Bool(Vec<bool>),
    Int(Vec<i64>),
    Uint(Vec<u64>),
    F32(Floats<f32>),
    F64(Floats<f64>),
    Str(Vec<String>),
}

/// Floating-point elements; NaN and the infinities, which JSON numbers
/// cannot hold, are written as the strings `"NaN"`, `"Infinity"` and
/// `"-Infinity"` (what Python's `float()` and numpy read back).
#[derive(Debug)]
pub struct Floats<T>(pub Vec<T>);

impl<T: Serialize + Copy + Into<f64>> Serialize for Floats<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for x in &self.0 {
            let wide: f64 = (*x).into();
            if wide.is_nan() {
                seq.serialize_element("NaN")?;
            } else if wide == f64::INFINITY {
                seq.serialize_element("Infinity")?;
            } else if wide == f64::NEG_INFINITY {
                seq.serialize_element("-Infinity")?;
            } else {
                seq.serialize_element(x)?;
            }
        }
        seq.end()
    }
}

/// The value of a JSON string that names NaN or an infinity, in the
/// spellings Python, numpy and the KServe/Triton servers use.
fn non_finite(s: &str) -> Option<f64> {
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'-') => (-1.0, &s[1..]),
        Some(b'+') => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    if rest.eq_ignore_ascii_case("nan") {
        Some(f64::NAN)
    } else if rest.eq_ignore_ascii_case("inf") || rest.eq_ignore_ascii_case("infinity") {
        Some(sign * f64::INFINITY)
    } else {
        None
    }
}

/// `NaN`, `Infinity`, `-Infinity`, `Inf` and `-Inf` written bare, as
/// Python's `json` and rapidjson (tritonclient) write them, become the
/// strings [`non_finite`] reads, so serde can parse the body. Text inside
/// strings is left alone; a body without such tokens is not copied.
pub fn quote_non_finite(json: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const TOKENS: [&[u8]; 5] = [b"-Infinity", b"-Inf", b"Infinity", b"Inf", b"NaN"];
    let mut out: Option<Vec<u8>> = None;
    let (mut in_string, mut escaped) = (false, false);
    let mut copied = 0;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if matches!(b, b'N' | b'I' | b'-')
            && let Some(t) = TOKENS.iter().find(|t| {
                json[i..].starts_with(t)
                    && !json
                        .get(i + t.len())
                        .is_some_and(|c| c.is_ascii_alphanumeric())
            })
        {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(json.len() + 16));
            buf.extend_from_slice(&json[copied..i]);
            buf.push(b'"');
            buf.extend_from_slice(t);
            buf.push(b'"');
            i += t.len();
            copied = i;
            continue;
        }
        i += 1;
    }
    match out {
        None => std::borrow::Cow::Borrowed(json),
        Some(mut buf) => {
            buf.extend_from_slice(&json[copied..]);
            std::borrow::Cow::Owned(buf)
        }
    }
}

/// A checked request: one tensor per model input, in the model's order, and
/// the size of the batch dimension when the model has one.
#[derive(Debug)]
pub struct Decoded {
    pub inputs: Vec<Tensor>,
    pub rows: usize,
    /// Indices into the model's outputs, in the order to answer them.
    pub outputs: Vec<usize>,
}

pub fn decode(model: &Model, req: Request) -> Result<Decoded, ModelError> {
    for given in &req.inputs {
        if !model.inputs.iter().any(|i| i.name == given.name) {
            return Err(ModelError::bad(format!(
                "unknown input {:?}; model {} has inputs {}",
                given.name,
                model.name,
                list(&model.inputs)
            )));
        }
    }
    let mut tensors = Vec::with_capacity(model.inputs.len());
    let mut rows = 1;
    for (ix, info) in model.inputs.iter().enumerate() {
        let mut matching = req.inputs.iter().filter(|i| i.name == info.name);
        let Some(given) = matching.next() else {
            return Err(ModelError::bad(format!(
                "missing input {:?} ({} {:?})",
                info.name,
                info.datatype.as_str(),
                info.shape
            )));
        };
        if matching.next().is_some() {
            return Err(ModelError::bad(format!(
                "input {:?} is given more than once",
                info.name
            )));
        }
        let shape = check_shape(info, given)?;
        if ix == 0 {
            rows = shape.first().copied().unwrap_or(1);
        } else if model.batchable && shape.first().copied() != Some(rows) {
            return Err(ModelError::bad(format!(
                "input {:?} has batch size {}, input {:?} has {rows}",
                info.name,
                shape.first().copied().unwrap_or(0),
                model.inputs[0].name
            )));
        }
        tensors.push(tensor(info, &given.contents, &shape)?);
    }
    let outputs = match req.outputs {
        None => (0..model.outputs.len()).collect(),
        Some(wanted) => wanted
            .iter()
            .map(|w| {
                model
                    .outputs
                    .iter()
                    .position(|o| o.name == *w)
                    .ok_or_else(|| {
                        ModelError::bad(format!(
                            "unknown output {w:?}; model {} has outputs {}",
                            model.name,
                            list(&model.outputs)
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Decoded {
        inputs: tensors,
        rows,
        outputs,
    })
}

fn list(infos: &[TensorInfo]) -> String {
    infos
        .iter()
        .map(|i| format!("{:?}", i.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_shape(info: &TensorInfo, given: &Input) -> Result<Vec<usize>, ModelError> {
    let name = &info.name;
    let datatype = DataType::parse(&given.datatype).ok_or_else(|| {
        ModelError::bad(format!(
            "input {name:?}: unknown datatype {:?}",
            given.datatype
        ))
    })?;
    if datatype != info.datatype {
        return Err(ModelError::bad(format!(
            "input {name:?}: datatype {} does not match the model's {}",
            datatype.as_str(),
            info.datatype.as_str()
        )));
    }
    let shape_error = || {
        ModelError::bad(format!(
            "input {name:?}: shape {:?} does not match the model's {:?} (-1 is any size)",
            given.shape, info.shape
        ))
    };
    if given.shape.len() != info.shape.len() {
        return Err(shape_error());
    }
    let mut shape = Vec::with_capacity(given.shape.len());
    for (&g, &want) in given.shape.iter().zip(&info.shape) {
        let Ok(g) = usize::try_from(g) else {
            return Err(shape_error());
        };
        if want >= 0 && i64::try_from(g) != Ok(want) {
            return Err(shape_error());
        }
        shape.push(g);
    }
    Ok(shape)
}

fn flatten<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        leaf => out.push(leaf),
    }
}

fn tensor(info: &TensorInfo, contents: &Contents, shape: &[usize]) -> Result<Tensor, ModelError> {
    let name = &info.name;
    let data = match contents {
        Contents::Json(data) => data,
        Contents::Raw(raw) => return raw::decode(name, info.datatype, shape, raw),
        Contents::Missing => {
            return Err(ModelError::bad(format!("input {name:?} has no data")));
        }
    };
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    let want = shape
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(*d))
        .ok_or_else(|| ModelError::bad(format!("input {name:?}: shape {shape:?} is too large")))?;
    if flat.len() != want {
        return Err(ModelError::bad(format!(
            "input {name:?}: shape {shape:?} needs {want} elements, `data` has {}",
            flat.len()
        )));
    }
    let dt = info.datatype;
    match dt {
        DataType::Bool => build(name, dt, shape, &flat, |v| match v {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) => match n.as_u64() {
                Some(0) => Ok(false),
                Some(1) => Ok(true),
                _ => Err(NOT_VALID),
            },
            _ => Err(NOT_VALID),
        }),
        DataType::Int8 => build(name, dt, shape, &flat, int::<i8>),
        DataType::Int16 => build(name, dt, shape, &flat, int::<i16>),
        DataType::Int32 => build(name, dt, shape, &flat, int::<i32>),
        DataType::Int64 => build(name, dt, shape, &flat, int::<i64>),
        DataType::Uint8 => build(name, dt, shape, &flat, int::<u8>),
        DataType::Uint16 => build(name, dt, shape, &flat, int::<u16>),
        DataType::Uint32 => build(name, dt, shape, &flat, int::<u32>),
        DataType::Uint64 => build(name, dt, shape, &flat, int::<u64>),
        DataType::Fp16 => build(name, dt, shape, &flat, |v| {
            float(v, f16::from_f64, |x: f16| x.is_infinite())
        }),
        DataType::Fp32 => build(name, dt, shape, &flat, |v| {
            float(v, |f| f as f32, f32::is_infinite)
        }),
        DataType::Fp64 => build(name, dt, shape, &flat, |v| {
            float(v, |f| f, f64::is_infinite)
        }),
        DataType::Bytes => {
            let mut values = Vec::with_capacity(flat.len());
            for (i, v) in flat.iter().enumerate() {
                let Value::String(s) = v else {
                    return Err(ModelError::bad(format!(
                        "input {name:?}: element {i} ({v}) is not a string, which BYTES elements are in JSON"
                    )));
                };
                values.push(s.clone());
            }
            raw::strings(name, shape, values)
        }
    }
}

/// Why a JSON element was refused, completed with the datatype.
const NOT_VALID: &str = "is not a valid";
const OUT_OF_RANGE: &str = "is out of range for";

fn int<T: TryFrom<i128>>(v: &Value) -> Result<T, &'static str> {
    let Value::Number(n) = v else {
        return Err(NOT_VALID);
    };
    let wide = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
        .ok_or(NOT_VALID)?;
    T::try_from(wide).map_err(|_| OUT_OF_RANGE)
}

/// A JSON number, or a string naming NaN or an infinity, as `T`; a finite
/// number too large for `T` is refused rather than turned into an infinity.
fn float<T>(
    v: &Value,
    narrow: impl Fn(f64) -> T,
    is_infinite: impl Fn(T) -> bool,
) -> Result<T, &'static str>
where
    T: Copy,
{
    let wide = match v {
        Value::Number(n) => n.as_f64().ok_or(NOT_VALID)?,
        Value::String(s) => non_finite(s).ok_or(NOT_VALID)?,
        _ => return Err(NOT_VALID),
    };
    let x = narrow(wide);
    if wide.is_finite() && is_infinite(x) {
        return Err(OUT_OF_RANGE);
    }
    Ok(x)
}

fn build<T: Datum + Copy>(
    name: &str,
    dt: DataType,
    shape: &[usize],
    flat: &[&Value],
    conv: impl Fn(&Value) -> Result<T, &'static str>,
) -> Result<Tensor, ModelError> {
    let mut values = Vec::with_capacity(flat.len());
    for (i, v) in flat.iter().enumerate() {
        match conv(v) {
            Ok(x) => values.push(x),
            Err(why) => {
                return Err(ModelError::bad(format!(
                    "input {name:?}: element {i} ({v}) {why} {}",
                    dt.as_str()
                )));
            }
        }
    }
    Tensor::from_shape(shape, &values).map_err(|e| ModelError::bad(format!("input {name:?}: {e}")))
}

/// One output of an answer.
#[derive(Debug)]
pub struct Output<'a> {
    pub name: &'a str,
    pub datatype: DataType,
    pub tensor: &'a Tensor,
}

/// The outputs at `picked` of the model's results `results`.
pub fn outputs<'a>(
    model: &'a Model,
    results: &'a [Tensor],
    picked: &[usize],
) -> Result<Vec<Output<'a>>, ModelError> {
    picked
        .iter()
        .map(|&ix| {
            let (Some(info), Some(t)) = (model.outputs.get(ix), results.get(ix)) else {
                return Err(ModelError::Inference(format!(
                    "the model returned {} outputs, expected {}",
                    results.len(),
                    model.outputs.len()
                )));
            };
            let datatype = DataType::from_datum(t.datum_type()).ok_or_else(|| {
                ModelError::Inference(format!(
                    "output {:?} has element type {:?}, which the protocol cannot carry",
                    info.name,
                    t.datum_type()
                ))
            })?;
            Ok(Output {
                name: &info.name,
                datatype,
                tensor: t,
            })
        })
        .collect()
}

/// The elements of `t` as `T`, each turned by `f`.
pub(crate) fn values<T: Datum + Copy, U>(
    t: &Tensor,
    f: impl Fn(T) -> U,
) -> tract_onnx::prelude::TractResult<Vec<U>> {
    Ok(t.to_plain_array_view::<T>()?
        .iter()
        .map(|x| f(*x))
        .collect())
}

/// The elements of `t`, read as `dt`, as JSON `data`.
pub fn json_data(t: &Tensor, dt: DataType) -> tract_onnx::prelude::TractResult<Data> {
    Ok(match dt {
        DataType::Bool => Data::Bool(values::<bool, _>(t, |x| x)?),
        DataType::Int8 => Data::Int(values::<i8, _>(t, i64::from)?),
        DataType::Int16 => Data::Int(values::<i16, _>(t, i64::from)?),
        DataType::Int32 => Data::Int(values::<i32, _>(t, i64::from)?),
        DataType::Int64 => Data::Int(values::<i64, _>(t, |x| x)?),
        DataType::Uint8 => Data::Uint(values::<u8, _>(t, u64::from)?),
        DataType::Uint16 => Data::Uint(values::<u16, _>(t, u64::from)?),
        DataType::Uint32 => Data::Uint(values::<u32, _>(t, u64::from)?),
        DataType::Uint64 => Data::Uint(values::<u64, _>(t, |x| x)?),
        DataType::Fp16 => Data::F32(Floats(values::<f16, _>(t, f32::from)?)),
        DataType::Fp32 => Data::F32(Floats(values::<f32, _>(t, |x| x)?)),
        DataType::Fp64 => Data::F64(Floats(values::<f64, _>(t, |x| x)?)),
        DataType::Bytes => Data::Str(t.to_plain_array_view::<String>()?.iter().cloned().collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn quoted(s: &str) -> String {
        String::from_utf8(quote_non_finite(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn bare_non_finite_tokens_become_strings_outside_strings_only() {
        assert_eq!(
            quoted(r#"[NaN,Infinity, -Infinity,Inf,-Inf, 1]"#),
            r#"["NaN","Infinity", "-Infinity","Inf","-Inf", 1]"#
        );
        let inside = r#"{"a": "NaN \" Infinity", "b\\": -1}"#;
        assert!(matches!(
            quote_non_finite(inside.as_bytes()),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(quoted("[NaNx, Info]"), "[NaNx, Info]");
    }

    #[test]
    fn non_finite_strings_in_the_usual_spellings() {
        for s in ["NaN", "nan", "-nan", "+NaN"] {
            assert!(non_finite(s).is_some_and(f64::is_nan), "{s}");
        }
        for s in ["Inf", "inf", "+inf", "Infinity", "INFINITY"] {
            assert_eq!(non_finite(s), Some(f64::INFINITY), "{s}");
        }
        for s in ["-Inf", "-inf", "-Infinity"] {
            assert_eq!(non_finite(s), Some(f64::NEG_INFINITY), "{s}");
        }
        for s in ["", "-", "1", "infinite", "nanx"] {
            assert_eq!(non_finite(s), None, "{s}");
        }
    }

    #[test]
    fn non_finite_outputs_are_distinguishable_strings() {
        let data = Data::F32(Floats(vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.1,
        ]));
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"["NaN","Infinity","-Infinity",0.1]"#
        );
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[ -~]{0,8}".prop_map(Value::String),
            prop_oneof![Just("NaN"), Just("Infinity"), Just("-Inf"), Just("\\\"")]
                .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z]{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn valid_json_passes_unchanged(v in json_value()) {
            let text = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(quoted(&text), text);
        }

        #[test]
        fn arrays_with_bare_tokens_parse_as_their_values(
            items in proptest::collection::vec(
                prop_oneof![
                    Just("NaN".to_string()),
                    Just("Infinity".to_string()),
                    Just("-Infinity".to_string()),
                    any::<i32>().prop_map(|i| i.to_string()),
                ],
                0..8,
            )
        ) {
            let text = format!("[{}]", items.join(","));
            let parsed: Vec<Value> = serde_json::from_slice(&quote_non_finite(text.as_bytes())).unwrap();
            prop_assert_eq!(parsed.len(), items.len());
            for (p, i) in parsed.iter().zip(&items) {
                let got = match p {
                    Value::String(s) => non_finite(s).unwrap(),
                    other => other.as_f64().unwrap(),
                };
                let want: f64 = i.parse().unwrap();
                prop_assert!(got == want || (got.is_nan() && want.is_nan()));
            }
        }
    }
}
