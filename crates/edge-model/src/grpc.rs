//! The Open Inference Protocol over gRPC on a port of its own: KServe V2's
//! `inference.GRPCInferenceService` (liveness, readiness, metadata,
//! `ModelInfer` with raw or typed contents, and Triton's `ModelStreamInfer`)
//! and `grpc.health.v1`. Inference goes through the same [`infer::infer`] as
//! REST; only the framing differs.

use crate::codec::{self, Contents};
use crate::error::ModelError;
use crate::infer;
use crate::model::{DataType, TensorInfo};
use crate::raw;
use crate::repo::Served;
use crate::server::{self, AppState};
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// The messages, service and client generated from
/// `proto/grpc_predict_v2.proto`.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::model_infer_request::InferInputTensor;
use proto::model_infer_response::InferOutputTensor;
use proto::model_metadata_response::TensorMetadata;
use proto::repository_index_response::ModelIndex;
use proto::*;

/// The RPCs this server answers, for the message of one it does not.
const SERVED: &str = "ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer and ModelStreamInfer";

/// Requests of one stream being answered at once, so they can share batches.
const STREAM_IN_FLIGHT: usize = 64;

/// The HTTP/2 receive window of one gRPC call.
const STREAM_WINDOW: u32 = 2 << 20;

/// Serves gRPC on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ModelError> {
    let svc = GrpcInferenceServiceServer::new(Service { state })
        .max_decoding_message_size(server::BODY_LIMIT)
        .max_encoding_message_size(usize::MAX);
    // grpc.health.v1 too, for the catalog's gRPC check and other probes:
    // the server and the inference service are SERVING while it runs.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<GrpcInferenceServiceServer<Service>>()
        .await;
    let router = tonic::service::Routes::new(svc)
        .add_service(health)
        .into_axum_router()
        .layer(axum::middleware::from_fn(explain_unimplemented));
    tonic::transport::Server::builder()
        // HTTP/2's default 64 KiB window made a 600 KB image wait on ten
        // WINDOW_UPDATE round trips, in 16 KiB frames: the windows hold a
        // few such requests per stream and connection, frames go up to 1 MiB.
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(4 * STREAM_WINDOW)
        .max_frame_size(1 << 20)
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a large answer waits out the peer's
            // delayed ACK: 40 ms per request for a 224x224 image.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|e| ModelError::Serve(std::io::Error::other(e)))
}

/// tonic answers an RPC nobody serves with a bare UNIMPLEMENTED; clients
/// (tritonclient asks for ModelStatistics, say) show its message, so say which
/// RPC it was and what is served.
async fn explain_unimplemented(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let mut resp = next.run(req).await;
    let unimplemented = resp
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"12");
    if unimplemented && !resp.headers().contains_key("grpc-message") {
        let message = format!("edge does not serve {path}; it serves {SERVED}");
        if let Ok(v) = axum::http::HeaderValue::from_str(&message) {
            resp.headers_mut().insert("grpc-message", v);
        }
    }
    resp
}

struct Service {
    state: Arc<AppState>,
}

fn status(e: ModelError) -> Status {
    match e {
        ModelError::BadRequest(m) => Status::invalid_argument(m),
        ModelError::ModelNotFound(m) => Status::not_found(m),
        ModelError::ShuttingDown => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// The config enum of a protocol type, by its Triton name.
fn config_type(dt: DataType) -> i32 {
    proto::DataType::from_str_name(&server::config_type(dt)).map_or(0, |t| t as i32)
}

/// A server has one repository; Triton's clients name none.
fn one_repository(name: &str) -> Result<(), Status> {
    if name.is_empty() {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "repository {name:?}: this server has one model repository; leave repository_name empty"
    )))
}

/// Triton's load parameters (a config override, model files sent inline)
/// change what is loaded; edge loads a model only from its sources.
/// `unload_dependents` (tritonclient always sends it) means nothing here:
/// edge has no ensembles, so no model depends on another.
fn no_parameters(
    p: &std::collections::HashMap<String, ModelRepositoryParameter>,
    meaningless: &[&str],
) -> Result<(), Status> {
    match p.keys().find(|k| !meaningless.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(Status::invalid_argument(
            crate::repo::unsupported_parameter(k),
        )),
    }
}

/// An empty version string means "the server's choice".
fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

fn tensor_metadata(infos: &[TensorInfo]) -> Vec<TensorMetadata> {
    infos
        .iter()
        .map(|i| TensorMetadata {
            name: i.name.clone(),
            datatype: i.datatype.as_str().to_string(),
            shape: i.shape.clone(),
        })
        .collect()
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    /// Models load before the ports open, so a serving server is ready.
    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        req: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let r = req.into_inner();
        match server::lookup(&self.state, &r.name, version(&r.version)) {
            Ok(_) => Ok(Response::new(ModelReadyResponse { ready: true })),
            // A model of the repository that is not loaded is there, not
            // ready, as Triton answers (tritonclient's is_model_ready).
            Err(_) if self.state.repo.is_unloaded(&r.name) => {
                Ok(Response::new(ModelReadyResponse { ready: false }))
            }
            Err(e) => Err(status(e)),
        }
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        let (name, version) = server::server_info();
        Ok(Response::new(ServerMetadataResponse {
            name: name.to_string(),
            version: version.to_string(),
            extensions: server::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = req.into_inner();
        let served = server::lookup(&self.state, &r.name, version(&r.version)).map_err(status)?;
        let m = &served.model;
        Ok(Response::new(ModelMetadataResponse {
            name: m.name.clone(),
            versions: match version(&r.version) {
                Some(v) => vec![v.to_string()],
                None => server::versions(&self.state, &r.name)
                    .iter()
                    .map(u64::to_string)
                    .collect(),
            },
            platform: "onnx".to_string(),
            inputs: tensor_metadata(&m.inputs),
            outputs: tensor_metadata(&m.outputs),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        infer_one(&self.state, req.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn model_config(
        &self,
        req: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let r = req.into_inner();
        let served = server::lookup(&self.state, &r.name, version(&r.version)).map_err(status)?;
        let c = served.config();
        let versions = server::versions(&self.state, &r.name)
            .into_iter()
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
            .collect();
        Ok(Response::new(ModelConfigResponse {
            config: Some(ModelConfig {
                name: c.name,
                platform: "onnx".to_string(),
                backend: "tract".to_string(),
                max_batch_size: i32::try_from(c.max_batch_size).unwrap_or(i32::MAX),
                version_policy: Some(ModelVersionPolicy {
                    policy_choice: Some(model_version_policy::PolicyChoice::Specific(
                        model_version_policy::Specific { versions },
                    )),
                }),
                input: c
                    .input
                    .iter()
                    .map(|t| ModelInput {
                        name: t.name.clone(),
                        data_type: config_type(t.datatype),
                        dims: t.dims.clone(),
                    })
                    .collect(),
                output: c
                    .output
                    .iter()
                    .map(|t| ModelOutput {
                        name: t.name.clone(),
                        data_type: config_type(t.datatype),
                        dims: t.dims.clone(),
                    })
                    .collect(),
            }),
        }))
    }

    async fn repository_index(
        &self,
        req: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let r = req.into_inner();
        one_repository(&r.repository_name)?;
        let models = self
            .state
            .repo
            .index(r.ready)
            .into_iter()
            .map(|e| ModelIndex {
                name: e.name,
                version: e.version.unwrap_or_default(),
                state: e.state.to_string(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        req: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let r = req.into_inner();
        one_repository(&r.repository_name)?;
        no_parameters(&r.parameters, &[])?;
        match self.state.repo.load(&r.model_name).await {
            Ok(_) => Ok(Response::new(RepositoryModelLoadResponse {})),
            Err(e @ ModelError::ModelNotFound(_)) => Err(status(e)),
            Err(e) => Err(Status::invalid_argument(format!(
                "loading {:?}: {e}",
                r.model_name
            ))),
        }
    }

    async fn repository_model_unload(
        &self,
        req: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let r = req.into_inner();
        one_repository(&r.repository_name)?;
        no_parameters(&r.parameters, &["unload_dependents"])?;
        self.state
            .repo
            .unload(&r.model_name)
            .await
            .map_err(status)?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }

    type ModelStreamInferStream = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>,
    >;

    async fn model_stream_infer(
        &self,
        req: Request<tonic::Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        use futures_util::StreamExt;
        let state = self.state.clone();
        let answers = req
            .into_inner()
            .map(move |r| {
                let state = state.clone();
                async move {
                    let r = r?;
                    Ok(match infer_one(&state, r).await {
                        Ok(answer) => ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(answer),
                        },
                        Err(e) => ModelStreamInferResponse {
                            error_message: e.to_string(),
                            infer_response: None,
                        },
                    })
                }
            })
            .buffered(STREAM_IN_FLIGHT);
        Ok(Response::new(Box::pin(answers)))
    }
}

/// One `ModelInfer`, counted in the model's request metrics.
async fn infer_one(
    state: &AppState,
    r: ModelInferRequest,
) -> Result<ModelInferResponse, ModelError> {
    let started = Instant::now();
    let served = server::lookup(state, &r.model_name, version(&r.model_version))?;
    let answer = model_infer(&served, r).await;
    let code = match &answer {
        Ok(_) => 200,
        Err(e) => server::status_of(e).as_u16(),
    };
    served.metrics.record(code, started.elapsed().as_secs_f64());
    answer
}

async fn model_infer(
    served: &Served,
    r: ModelInferRequest,
) -> Result<ModelInferResponse, ModelError> {
    let incoming = served.batcher.incoming();
    let typed_request = r.raw_input_contents.is_empty() && !r.inputs.is_empty();
    let request = request(r)?;
    let answer = infer::infer(&served.model, &served.batcher, incoming, request).await?;
    let outputs = answer.outputs(&served.model)?;
    // Answered the way it was asked: typed `contents` for typed inputs (what
    // grpcurl and simple clients read), raw contents otherwise. FP16 has no
    // typed field, and the protocol does not mix the two in one answer.
    let typed = typed_request && outputs.iter().all(|o| o.datatype != DataType::Fp16);
    let mut tensors = Vec::with_capacity(outputs.len());
    let mut raw_output_contents = Vec::with_capacity(outputs.len());
    for o in &outputs {
        let reading = |e: tract_onnx::prelude::TractError| {
            ModelError::Inference(format!("reading output {:?}: {e}", o.name))
        };
        let contents = if typed {
            Some(typed_contents(o.tensor, o.datatype).map_err(reading)?)
        } else {
            raw_output_contents.push(Bytes::from(
                raw::encode(o.tensor, o.datatype).map_err(reading)?,
            ));
            None
        };
        tensors.push(InferOutputTensor {
            name: o.name.to_string(),
            datatype: o.datatype.as_str().to_string(),
            shape: o.tensor.shape().iter().map(|d| *d as i64).collect(),
            parameters: Default::default(),
            contents,
        });
    }
    Ok(ModelInferResponse {
        model_name: served.model.name.clone(),
        model_version: served.version.to_string(),
        id: answer.id.unwrap_or_default(),
        parameters: Default::default(),
        outputs: tensors,
        raw_output_contents,
    })
}

/// `t`'s elements in the typed field of `dt` (not FP16, which has none).
fn typed_contents(
    t: &tract_onnx::prelude::Tensor,
    dt: DataType,
) -> tract_onnx::prelude::TractResult<InferTensorContents> {
    let mut c = InferTensorContents::default();
    match dt {
        DataType::Bool => c.bool_contents = codec::values::<bool, _>(t, |x| x)?,
        DataType::Int8 => c.int_contents = codec::values::<i8, _>(t, i32::from)?,
        DataType::Int16 => c.int_contents = codec::values::<i16, _>(t, i32::from)?,
        DataType::Int32 => c.int_contents = codec::values::<i32, _>(t, |x| x)?,
        DataType::Int64 => c.int64_contents = codec::values::<i64, _>(t, |x| x)?,
        DataType::Uint8 => c.uint_contents = codec::values::<u8, _>(t, u32::from)?,
        DataType::Uint16 => c.uint_contents = codec::values::<u16, _>(t, u32::from)?,
        DataType::Uint32 => c.uint_contents = codec::values::<u32, _>(t, |x| x)?,
        DataType::Uint64 => c.uint64_contents = codec::values::<u64, _>(t, |x| x)?,
        DataType::Fp32 => c.fp32_contents = codec::values::<f32, _>(t, |x| x)?,
        DataType::Fp64 => c.fp64_contents = codec::values::<f64, _>(t, |x| x)?,
        DataType::Bytes => {
            c.bytes_contents = t
                .to_plain_array_view::<String>()?
                .iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect();
        }
        DataType::Fp16 => {
            return Err(tract_onnx::prelude::TractError::msg(
                "FP16 has no typed contents field",
            ));
        }
    }
    Ok(c)
}

/// The protocol-neutral request of a `ModelInferRequest`: raw contents as
/// they are, typed contents turned into the same little-endian layout.
fn request(r: ModelInferRequest) -> Result<codec::Request, ModelError> {
    let raw = r.raw_input_contents;
    if !raw.is_empty() && raw.len() != r.inputs.len() {
        return Err(ModelError::bad(format!(
            "raw_input_contents has {} entries for {} inputs; give one per input, in the order of `inputs`",
            raw.len(),
            r.inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut inputs = Vec::with_capacity(r.inputs.len());
    for mut i in r.inputs {
        let contents = match (raw.next(), i.contents.take()) {
            (Some(_), Some(_)) => {
                return Err(ModelError::bad(format!(
                    "input {:?} has both `contents` and raw_input_contents",
                    i.name
                )));
            }
            (Some(bytes), None) => Contents::Raw(bytes),
            (None, Some(typed)) => Contents::Raw(typed_to_raw(&i, typed)?),
            (None, None) => Contents::Missing,
        };
        inputs.push(codec::Input {
            name: i.name,
            datatype: i.datatype,
            shape: i.shape,
            contents,
        });
    }
    let outputs = (!r.outputs.is_empty()).then(|| r.outputs.into_iter().map(|o| o.name).collect());
    Ok(codec::Request {
        id: (!r.id.is_empty()).then_some(r.id),
        inputs,
        outputs,
    })
}

/// Typed contents in the raw layout; the field must be the one the
/// datatype's elements go in, with one element per position of the shape.
fn typed_to_raw(input: &InferInputTensor, c: InferTensorContents) -> Result<Bytes, ModelError> {
    let name = &input.name;
    // An unknown datatype is refused, by name, when the request is checked.
    let Some(dt) = DataType::parse(&input.datatype) else {
        return Ok(Bytes::new());
    };
    let (field, count, raw) = match dt {
        DataType::Bool => (
            "bool_contents",
            c.bool_contents.len(),
            c.bool_contents.iter().map(|b| u8::from(*b)).collect(),
        ),
        DataType::Int8 => narrow(name, dt, "int_contents", &c.int_contents, |x: i8| {
            x.to_le_bytes()
        })?,
        DataType::Int16 => narrow(name, dt, "int_contents", &c.int_contents, i16::to_le_bytes)?,
        DataType::Int32 => narrow(name, dt, "int_contents", &c.int_contents, i32::to_le_bytes)?,
        DataType::Int64 => narrow(
            name,
            dt,
            "int64_contents",
            &c.int64_contents,
            i64::to_le_bytes,
        )?,
        DataType::Uint8 => narrow(name, dt, "uint_contents", &c.uint_contents, |x: u8| [x])?,
        DataType::Uint16 => narrow(
            name,
            dt,
            "uint_contents",
            &c.uint_contents,
            u16::to_le_bytes,
        )?,
        DataType::Uint32 => narrow(
            name,
            dt,
            "uint_contents",
            &c.uint_contents,
            u32::to_le_bytes,
        )?,
        DataType::Uint64 => narrow(
            name,
            dt,
            "uint64_contents",
            &c.uint64_contents,
            u64::to_le_bytes,
        )?,
        DataType::Fp32 => narrow(
            name,
            dt,
            "fp32_contents",
            &c.fp32_contents,
            f32::to_le_bytes,
        )?,
        DataType::Fp64 => narrow(
            name,
            dt,
            "fp64_contents",
            &c.fp64_contents,
            f64::to_le_bytes,
        )?,
        DataType::Fp16 => {
            return Err(ModelError::bad(format!(
                "input {name:?}: FP16 has no typed contents field; send it in raw_input_contents"
            )));
        }
        DataType::Bytes => {
            let mut out = Vec::new();
            for (k, b) in c.bytes_contents.iter().enumerate() {
                let len = u32::try_from(b.len()).map_err(|_| {
                    ModelError::bad(format!("input {name:?}: element {k} is over 4 GiB"))
                })?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(b);
            }
            ("bytes_contents", c.bytes_contents.len(), out)
        }
    };
    let want = input.shape.iter().try_fold(1u64, |n, d| {
        u64::try_from(*d).ok().and_then(|d| n.checked_mul(d))
    });
    if let Some(want) = want
        && want != count as u64
    {
        return Err(ModelError::bad(format!(
            "input {name:?}: shape {:?} needs {want} elements, contents.{field} (where {} elements go) has {count}",
            input.shape,
            dt.as_str()
        )));
    }
    Ok(Bytes::from(raw))
}

/// Elements of a typed field as `T`, little-endian; one that does not fit
/// (an int_contents of 300 for INT8) is refused.
fn narrow<S, T, const N: usize>(
    name: &str,
    dt: DataType,
    field: &'static str,
    values: &[S],
    le: impl Fn(T) -> [u8; N],
) -> Result<(&'static str, usize, Vec<u8>), ModelError>
where
    S: Copy + std::fmt::Display,
    T: TryFrom<S>,
{
    let mut out = Vec::with_capacity(values.len() * N);
    for (k, v) in values.iter().enumerate() {
        let x = T::try_from(*v).map_err(|_| {
            ModelError::bad(format!(
                "input {name:?}: element {k} ({v}) is out of range for {}",
                dt.as_str()
            ))
        })?;
        out.extend_from_slice(&le(x));
    }
    Ok((field, values.len(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_protocol_status_codes() {
        let code = |e: ModelError| status(e).code();
        assert_eq!(code(ModelError::bad("x")), tonic::Code::InvalidArgument);
        assert_eq!(
            code(ModelError::ModelNotFound("m".into())),
            tonic::Code::NotFound
        );
        assert_eq!(code(ModelError::ShuttingDown), tonic::Code::Unavailable);
        assert_eq!(
            code(ModelError::Inference("boom".into())),
            tonic::Code::Internal
        );
    }
}
