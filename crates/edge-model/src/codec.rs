//! Open Inference Protocol request and response bodies, and their conversion
//! to and from tract tensors with every check a bad request needs.

use crate::error::ModelError;
use crate::model::{DataType, Model, TensorInfo};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tract_onnx::prelude::{Datum, Tensor, f16};

#[derive(Debug, Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    pub inputs: Vec<InputTensor>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
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
}

#[derive(Debug, Serialize)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

#[derive(Debug, Serialize)]
pub struct OutputTensor {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// Output elements, flat in row-major order.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Data {
    Bool(Vec<bool>),
    Int(Vec<i64>),
    Uint(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
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

pub fn decode(model: &Model, req: InferRequest) -> Result<Decoded, ModelError> {
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
        tensors.push(tensor(info, given, &shape)?);
    }
    let outputs = match req.outputs {
        None => (0..model.outputs.len()).collect(),
        Some(wanted) => wanted
            .iter()
            .map(|w| {
                model
                    .outputs
                    .iter()
                    .position(|o| o.name == w.name)
                    .ok_or_else(|| {
                        ModelError::bad(format!(
                            "unknown output {:?}; model {} has outputs {}",
                            w.name,
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

fn check_shape(info: &TensorInfo, given: &InputTensor) -> Result<Vec<usize>, ModelError> {
    let name = &info.name;
    let datatype = DataType::parse(&given.datatype).ok_or_else(|| {
        ModelError::bad(format!(
            "input {name:?}: unknown datatype {:?}",
            given.datatype
        ))
    })?;
    if datatype == DataType::Bytes || info.datatype == DataType::Bytes {
        return Err(ModelError::bad(format!(
            "input {name:?}: datatype BYTES is unsupported"
        )));
    }
    if datatype != info.datatype {
        return Err(ModelError::bad(format!(
            "input {name:?}: datatype {} does not match the model's {}",
            datatype.as_str(),
            info.datatype.as_str()
        )));
    }
    if given
        .parameters
        .as_ref()
        .is_some_and(|p| p.contains_key("binary_data_size"))
    {
        return Err(ModelError::bad(format!(
            "input {name:?}: binary tensor data is unsupported; send `data` as JSON"
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

fn tensor(info: &TensorInfo, given: &InputTensor, shape: &[usize]) -> Result<Tensor, ModelError> {
    let name = &info.name;
    let Some(data) = &given.data else {
        return Err(ModelError::bad(format!("input {name:?}: no `data`")));
    };
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    let want: usize = shape.iter().product();
    if flat.len() != want {
        return Err(ModelError::bad(format!(
            "input {name:?}: shape {shape:?} needs {want} elements, `data` has {}",
            flat.len()
        )));
    }
    let dt = info.datatype;
    match dt {
        DataType::Bool => build(name, dt, shape, &flat, |v| match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_u64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            _ => None,
        }),
        DataType::Int8 => build(name, dt, shape, &flat, int::<i8>),
        DataType::Int16 => build(name, dt, shape, &flat, int::<i16>),
        DataType::Int32 => build(name, dt, shape, &flat, int::<i32>),
        DataType::Int64 => build(name, dt, shape, &flat, int::<i64>),
        DataType::Uint8 => build(name, dt, shape, &flat, int::<u8>),
        DataType::Uint16 => build(name, dt, shape, &flat, int::<u16>),
        DataType::Uint32 => build(name, dt, shape, &flat, int::<u32>),
        DataType::Uint64 => build(name, dt, shape, &flat, int::<u64>),
        DataType::Fp16 => build(name, dt, shape, &flat, |v| v.as_f64().map(f16::from_f64)),
        DataType::Fp32 => build(name, dt, shape, &flat, |v| v.as_f64().map(|f| f as f32)),
        DataType::Fp64 => build(name, dt, shape, &flat, Value::as_f64),
        DataType::Bytes => Err(ModelError::bad(format!(
            "input {name:?}: datatype BYTES is unsupported"
        ))),
    }
}

fn int<T: TryFrom<i128>>(v: &Value) -> Option<T> {
    let Value::Number(n) = v else { return None };
    let wide = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))?;
    T::try_from(wide).ok()
}

fn build<T: Datum + Copy>(
    name: &str,
    dt: DataType,
    shape: &[usize],
    flat: &[&Value],
    conv: impl Fn(&Value) -> Option<T>,
) -> Result<Tensor, ModelError> {
    let mut values = Vec::with_capacity(flat.len());
    for (i, v) in flat.iter().enumerate() {
        match conv(v) {
            Some(x) => values.push(x),
            None => {
                return Err(ModelError::bad(format!(
                    "input {name:?}: element {i} ({v}) is not a valid {}",
                    dt.as_str()
                )));
            }
        }
    }
    Tensor::from_shape(shape, &values).map_err(|e| ModelError::bad(format!("input {name:?}: {e}")))
}

/// The answer for `outputs` of the model's results `results`.
pub fn encode(
    model: &Model,
    version: u64,
    id: Option<String>,
    results: &[Tensor],
    outputs: &[usize],
) -> Result<InferResponse, ModelError> {
    let mut out = Vec::with_capacity(outputs.len());
    for &ix in outputs {
        let (Some(info), Some(t)) = (model.outputs.get(ix), results.get(ix)) else {
            return Err(ModelError::Inference(format!(
                "the model returned {} outputs, expected {}",
                results.len(),
                model.outputs.len()
            )));
        };
        let datatype = DataType::from_datum(t.datum_type())
            .filter(|d| *d != DataType::Bytes)
            .ok_or_else(|| {
                ModelError::Inference(format!(
                    "output {:?} has element type {:?}, which the protocol cannot carry as JSON",
                    info.name,
                    t.datum_type()
                ))
            })?;
        out.push(OutputTensor {
            name: info.name.clone(),
            datatype: datatype.as_str(),
            shape: t.shape().to_vec(),
            data: data(t, datatype).map_err(|e| {
                ModelError::Inference(format!("reading output {:?}: {e}", info.name))
            })?,
        });
    }
    Ok(InferResponse {
        model_name: model.name.clone(),
        model_version: version.to_string(),
        id,
        outputs: out,
    })
}

fn values<T: Datum + Copy, U>(
    t: &Tensor,
    f: impl Fn(T) -> U,
) -> tract_onnx::prelude::TractResult<Vec<U>> {
    Ok(t.to_plain_array_view::<T>()?
        .iter()
        .map(|x| f(*x))
        .collect())
}

fn data(t: &Tensor, dt: DataType) -> tract_onnx::prelude::TractResult<Data> {
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
        DataType::Fp16 => Data::F32(values::<f16, _>(t, f32::from)?),
        DataType::Fp32 => Data::F32(values::<f32, _>(t, |x| x)?),
        DataType::Fp64 => Data::F64(values::<f64, _>(t, |x| x)?),
        DataType::Bytes => {
            return Err(tract_onnx::prelude::TractError::msg("BYTES output"));
        }
    })
}
