//! The REST inference body with the binary tensor extension: a JSON header
//! of `Inference-Header-Content-Length` bytes, then the raw contents of each
//! input that has `parameters.binary_data_size`, in the order of `inputs`.
//! Outputs asked for with `parameters.binary_data` (or, for all of them,
//! the request's `parameters.binary_data_output`) come back the same way.

use crate::codec::{
    self, Contents, InferRequest, InferResponse, Input, Output, OutputTensor, Request,
};
use crate::error::ModelError;
use crate::raw;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// The header giving the length of the JSON part, in requests and answers.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Which outputs to answer as binary data.
#[derive(Debug, Default)]
pub struct OutputModes {
    all: bool,
    /// Per requested output, in order; `None` takes `all`.
    each: Vec<Option<bool>>,
}

impl OutputModes {
    fn binary(&self, k: usize) -> bool {
        self.each.get(k).copied().flatten().unwrap_or(self.all)
    }
}

/// Splits and parses a REST inference body. `header_length` is the value of
/// the `Inference-Header-Content-Length` header, if it was sent.
pub fn parse(
    body: Bytes,
    header_length: Option<&[u8]>,
) -> Result<(Request, OutputModes), ModelError> {
    let json_len = match header_length {
        None => body.len(),
        Some(v) => {
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ModelError::bad(format!(
                        "Inference-Header-Content-Length {:?} is not a byte count",
                        String::from_utf8_lossy(v)
                    ))
                })?;
            if n > body.len() {
                return Err(ModelError::bad(format!(
                    "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                    body.len()
                )));
            }
            n
        }
    };
    let mut binary = body.slice(json_len..);
    let total = binary.len();
    let text = codec::quote_non_finite(&body[..json_len]);
    let mut stream = serde_json::Deserializer::from_slice(&text).into_iter::<InferRequest>();
    let req = match stream.next() {
        Some(Ok(req)) => req,
        Some(Err(e)) if e.is_data() => {
            return Err(ModelError::bad(format!("invalid inference request: {e}")));
        }
        Some(Err(e)) => return Err(ModelError::bad(format!("malformed JSON: {e}"))),
        None => return Err(ModelError::bad("malformed JSON: the body is empty")),
    };
    let end = stream.byte_offset();
    if text[end..].iter().any(|b| !b.is_ascii_whitespace()) {
        let extra = text.len() - end;
        return Err(ModelError::bad(match header_length {
            None => format!(
                "{extra} bytes follow the JSON request: binary tensor data needs the Inference-Header-Content-Length header, the length of the JSON before it"
            ),
            Some(_) => format!(
                "Inference-Header-Content-Length is {json_len} but the JSON request ends {extra} bytes before that"
            ),
        }));
    }
    let all = flag(req.parameters.as_ref(), "binary_data_output", "the request")?.unwrap_or(false);
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for i in req.inputs {
        let size = match i.parameters.as_ref().and_then(|p| p.get("binary_data_size")) {
            None => None,
            Some(v) => Some(v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                ModelError::bad(format!(
                    "input {:?}: parameters.binary_data_size must be a whole number of bytes, got {v}",
                    i.name
                ))
            })?),
        };
        let contents = match (size, i.data) {
            (Some(_), Some(_)) => {
                return Err(ModelError::bad(format!(
                    "input {:?} has both `data` and parameters.binary_data_size",
                    i.name
                )));
            }
            (Some(n), None) if n > binary.len() => {
                return Err(ModelError::bad(match header_length {
                    None => format!(
                        "input {:?}: binary_data_size is {n} but the request has no binary part (no Inference-Header-Content-Length header)",
                        i.name
                    ),
                    Some(_) => format!(
                        "input {:?}: binary_data_size is {n} but only {} bytes of binary data are left",
                        i.name,
                        binary.len()
                    ),
                }));
            }
            (Some(n), None) => Contents::Raw(binary.split_to(n)),
            (None, Some(data)) => Contents::Json(data),
            (None, None) => Contents::Missing,
        };
        inputs.push(Input {
            name: i.name,
            datatype: i.datatype,
            shape: i.shape,
            contents,
        });
    }
    if !binary.is_empty() {
        return Err(ModelError::bad(format!(
            "the binary part is {total} bytes but the inputs' binary_data_size add up to {}",
            total - binary.len()
        )));
    }
    let mut modes = OutputModes {
        all,
        each: Vec::new(),
    };
    let outputs = match req.outputs {
        None => None,
        Some(wanted) => {
            let mut names = Vec::with_capacity(wanted.len());
            for o in wanted {
                modes.each.push(flag(
                    o.parameters.as_ref(),
                    "binary_data",
                    &format!("output {:?}", o.name),
                )?);
                names.push(o.name);
            }
            Some(names)
        }
    };
    Ok((
        Request {
            id: req.id,
            inputs,
            outputs,
        },
        modes,
    ))
}

fn flag(
    params: Option<&Map<String, Value>>,
    key: &str,
    whose: &str,
) -> Result<Option<bool>, ModelError> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ModelError::bad(format!(
            "{whose}: parameters.{key} must be true or false, got {v}"
        ))),
    }
}

/// The answer's body, and the length of its JSON part when binary outputs
/// follow it.
pub fn response(
    model_name: &str,
    model_version: &str,
    id: Option<String>,
    outputs: &[Output<'_>],
    modes: &OutputModes,
) -> Result<(Vec<u8>, Option<usize>), ModelError> {
    let mut binary = Vec::new();
    let mut tensors = Vec::with_capacity(outputs.len());
    for (k, o) in outputs.iter().enumerate() {
        let reading = |e: tract_onnx::prelude::TractError| {
            ModelError::Inference(format!("reading output {:?}: {e}", o.name))
        };
        let (parameters, data) = if modes.binary(k) {
            let raw = raw::encode(o.tensor, o.datatype).map_err(reading)?;
            let size = raw.len();
            binary.extend_from_slice(&raw);
            (Some(json!({ "binary_data_size": size })), None)
        } else {
            (
                None,
                Some(codec::json_data(o.tensor, o.datatype).map_err(reading)?),
            )
        };
        tensors.push(OutputTensor {
            name: o.name,
            datatype: o.datatype.as_str(),
            shape: o.tensor.shape(),
            parameters,
            data,
        });
    }
    let mut body = serde_json::to_vec(&InferResponse {
        model_name,
        model_version,
        id,
        outputs: tensors,
    })
    .map_err(|e| ModelError::Inference(format!("encoding the response: {e}")))?;
    if !(0..outputs.len()).any(|k| modes.binary(k)) {
        return Ok((body, None));
    }
    let json_len = body.len();
    body.extend_from_slice(&binary);
    Ok((body, Some(json_len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_body_parses_or_is_a_bad_request(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            header in proptest::option::of(0usize..300),
        ) {
            let header = header.map(|n| n.to_string());
            if let Err(e) = parse(Bytes::from(body), header.as_deref().map(str::as_bytes)) {
                prop_assert!(matches!(e, ModelError::BadRequest(_)), "{e}");
            }
        }

        #[test]
        fn binary_inputs_get_their_own_bytes_in_order(
            parts in proptest::collection::vec(
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
                1..5,
            ),
        ) {
            let inputs: Vec<Value> = parts
                .iter()
                .enumerate()
                .map(|(k, p)| match p {
                    Some(raw) => json!({"name": format!("i{k}"), "datatype": "UINT8",
                        "shape": [raw.len()], "parameters": {"binary_data_size": raw.len()}}),
                    None => json!({"name": format!("i{k}"), "datatype": "UINT8",
                        "shape": [1], "data": [k]}),
                })
                .collect();
            let mut body = json!({ "inputs": inputs }).to_string().into_bytes();
            let n = body.len().to_string();
            for raw in parts.iter().flatten() {
                body.extend_from_slice(raw);
            }
            let (req, _) = parse(Bytes::from(body), Some(n.as_bytes())).unwrap();
            for (input, part) in req.inputs.iter().zip(&parts) {
                match (&input.contents, part) {
                    (Contents::Raw(got), Some(want)) => prop_assert_eq!(&got[..], &want[..]),
                    (Contents::Json(_), None) => {}
                    (other, _) => prop_assert!(false, "unexpected {other:?}"),
                }
            }
        }
    }
}
