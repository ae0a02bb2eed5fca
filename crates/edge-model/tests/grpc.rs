//! The Open Inference Protocol over gRPC on loopback, with a tonic client
//! generated from the same .proto: health and metadata, ModelInfer with
//! raw and typed contents matching the REST answers (onnxruntime's
//! reference for iris), NaN/±Inf bits and BYTES, and errors as status codes
//! with messages that say what is wrong.

mod common;

use common::{fixture, iris_rows};
use edge_model::ServeConfig;
use edge_model::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use edge_model::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use edge_model::grpc::proto::*;
use serde_json::Value;
use tonic::Code;
use tonic::transport::Channel;

struct Running {
    client: GrpcInferenceServiceClient<Channel>,
    channel: Channel,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(model: &str, name: &str) -> Running {
    let mut cfg = ServeConfig::new(fixture(model), name, "127.0.0.1:0".parse().unwrap());
    cfg.grpc_addr = Some("127.0.0.1:0".parse().unwrap());
    let (_, addr, tx) = common::serve(cfg).await;
    let addr = addr.expect("a gRPC address");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Running {
        client: GrpcInferenceServiceClient::new(channel.clone()),
        channel,
        _stop: tx,
    }
}

fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        ..Default::default()
    }
}

fn f32s(values: &[f32]) -> bytes::Bytes {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn check_iris(r: &ModelInferResponse, case: &Value) {
    assert_eq!(r.model_name, "iris");
    assert_eq!(r.outputs[0].name, "label");
    assert_eq!(r.outputs[0].datatype, "INT64");
    let labels: Vec<i64> = r.raw_output_contents[0]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want: Vec<i64> = case["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(labels, want);
    assert_eq!(r.outputs[1].shape, [labels.len() as i64, 3]);
    let probs = r.raw_output_contents[1]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()));
    for (g, w) in probs.zip(case["outputs"][1]["data"].as_array().unwrap()) {
        let w = w.as_f64().unwrap() as f32;
        assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{g} vs {w}");
    }
}

#[tokio::test]
async fn health_metadata_and_iris_with_raw_and_typed_contents() {
    let mut s = start("iris.onnx", "iris").await;
    let c = &mut s.client;
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        c.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let ready = c
        .model_ready(ModelReadyRequest {
            name: "iris".into(),
            version: "1".into(),
        })
        .await
        .unwrap();
    assert!(ready.into_inner().ready);
    let meta = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "edge");
    assert!(meta.extensions.contains(&"binary_tensor_data".to_string()));
    let mm = c
        .model_metadata(ModelMetadataRequest {
            name: "iris".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (mm.platform.as_str(), mm.versions.as_slice()),
        ("onnx", &["1".to_string()][..])
    );
    assert_eq!(mm.inputs[0].name, "X");
    assert_eq!(mm.inputs[0].shape, [-1, 4]);
    assert_eq!(mm.outputs[1].datatype, "FP32");

    let (x, case) = iris_rows();
    let rows = (x.len() / 4) as i64;
    let raw = ModelInferRequest {
        model_name: "iris".into(),
        id: "g1".into(),
        inputs: vec![input("X", "FP32", &[rows, 4])],
        raw_input_contents: vec![f32s(&x)],
        ..Default::default()
    };
    let r = c.model_infer(raw).await.unwrap().into_inner();
    assert_eq!(r.id, "g1");
    check_iris(&r, &case);

    let mut typed = input("X", "FP32", &[rows, 4]);
    typed.contents = Some(InferTensorContents {
        fp32_contents: x.clone(),
        ..Default::default()
    });
    let r = c
        .model_infer(ModelInferRequest {
            model_name: "iris".into(),
            model_version: "1".into(),
            inputs: vec![typed],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Typed in, typed out.
    assert!(r.raw_output_contents.is_empty());
    let labels = &r.outputs[0].contents.as_ref().unwrap().int64_contents;
    assert_eq!(
        serde_json::to_value(labels).unwrap(),
        case["outputs"][0]["data"]
    );
    let probs = &r.outputs[1].contents.as_ref().unwrap().fp32_contents;
    assert_eq!(probs.len(), rows as usize * 3);

    let only = ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![input("X", "FP32", &[rows, 4])],
        outputs: vec![InferRequestedOutputTensor {
            name: "probabilities".into(),
            ..Default::default()
        }],
        raw_input_contents: vec![f32s(&x)],
        ..Default::default()
    };
    let r = c.model_infer(only).await.unwrap().into_inner();
    assert_eq!(r.outputs.len(), 1);
    assert_eq!(r.raw_output_contents[0].len(), rows as usize * 3 * 4);
}

#[tokio::test]
async fn nan_infinities_int64_and_bytes_round_trip() {
    let mut s = start("echo.onnx", "echo").await;
    let floats = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0];
    let ints = [i64::MIN, -1, 0, i64::MAX];
    let texts = ["héllo", "", "two words", "日本"];
    let mut prefixed = Vec::new();
    for t in texts {
        prefixed.extend_from_slice(&(t.len() as u32).to_le_bytes());
        prefixed.extend_from_slice(t.as_bytes());
    }
    let raw = ModelInferRequest {
        model_name: "echo".into(),
        inputs: vec![
            input("f32", "FP32", &[4]),
            input("i64", "INT64", &[4]),
            input("text", "BYTES", &[4]),
        ],
        raw_input_contents: vec![
            f32s(&floats),
            ints.iter().flat_map(|v| v.to_le_bytes()).collect(),
            prefixed.clone().into(),
        ],
        ..Default::default()
    };
    let r = s
        .client
        .model_infer(raw.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.raw_output_contents, raw.raw_input_contents,
        "the bits come back"
    );
    assert_eq!(r.outputs[2].datatype, "BYTES");

    let typed = |name: &str, dt: &str, contents: InferTensorContents| {
        let mut i = input(name, dt, &[4]);
        i.contents = Some(contents);
        i
    };
    let r = s
        .client
        .model_infer(ModelInferRequest {
            model_name: "echo".into(),
            inputs: vec![
                typed(
                    "f32",
                    "FP32",
                    InferTensorContents {
                        fp32_contents: floats.to_vec(),
                        ..Default::default()
                    },
                ),
                typed(
                    "i64",
                    "INT64",
                    InferTensorContents {
                        int64_contents: ints.to_vec(),
                        ..Default::default()
                    },
                ),
                typed(
                    "text",
                    "BYTES",
                    InferTensorContents {
                        bytes_contents: texts
                            .iter()
                            .map(|t| t.as_bytes().to_vec().into())
                            .collect(),
                        ..Default::default()
                    },
                ),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let c = |k: usize| r.outputs[k].contents.clone().unwrap();
    let f = c(0).fp32_contents;
    assert!(f[0].is_nan() && f[1] == f32::INFINITY && f[2] == f32::NEG_INFINITY);
    assert_eq!(f[3].to_bits(), (-0.0f32).to_bits());
    assert_eq!(c(1).int64_contents, ints);
    let words: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
    let got = c(2).bytes_contents;
    assert_eq!(got.iter().map(|b| &b[..]).collect::<Vec<_>>(), words);
}

#[tokio::test]
async fn errors_are_status_codes_that_say_what_is_wrong() {
    let mut s = start("iris.onnx", "iris").await;
    let row = f32s(&[5.1, 3.5, 1.4, 0.2]);
    let infer =
        |name: &str, inputs: Vec<InferInputTensor>, raw: Vec<bytes::Bytes>| ModelInferRequest {
            model_name: name.into(),
            inputs,
            raw_input_contents: raw,
            ..Default::default()
        };
    let typed_fp32 = |values: Vec<f32>| {
        let mut i = input("X", "FP32", &[1, 4]);
        i.contents = Some(InferTensorContents {
            fp32_contents: values,
            ..Default::default()
        });
        i
    };
    let mut wrong_field = input("X", "FP32", &[1, 4]);
    wrong_field.contents = Some(InferTensorContents {
        int_contents: vec![1, 2, 3, 4],
        ..Default::default()
    });
    let mut both = typed_fp32(vec![1.0; 4]);
    both.name = "X".into();
    let cases = [
        (
            infer("nope", vec![input("X", "FP32", &[1, 4])], vec![row.clone()]),
            Code::NotFound,
            "model \"nope\" not found",
        ),
        (
            infer("iris", vec![input("X", "FP32", &[1, 3])], vec![row.clone()]),
            Code::InvalidArgument,
            "shape [1, 3] does not match",
        ),
        (
            infer(
                "iris",
                vec![input("X", "FP32", &[1, 4])],
                vec![row.slice(..12)],
            ),
            Code::InvalidArgument,
            "needs 16 bytes, the binary data has 12",
        ),
        (
            infer(
                "iris",
                vec![input("X", "FP32", &[1, 4])],
                vec![row.clone(), row.clone()],
            ),
            Code::InvalidArgument,
            "raw_input_contents has 2 entries for 1 inputs",
        ),
        (
            infer("iris", vec![both], vec![row.clone()]),
            Code::InvalidArgument,
            "both `contents` and raw_input_contents",
        ),
        (
            infer("iris", vec![typed_fp32(vec![1.0; 3])], vec![]),
            Code::InvalidArgument,
            "needs 4 elements, contents.fp32_contents (where FP32 elements go) has 3",
        ),
        (
            infer("iris", vec![wrong_field], vec![]),
            Code::InvalidArgument,
            "contents.fp32_contents (where FP32 elements go) has 0",
        ),
        (
            infer("iris", vec![input("X", "FP32", &[1, 4])], vec![]),
            Code::InvalidArgument,
            "input \"X\" has no data",
        ),
    ];
    for (req, code, needle) in cases {
        let e = s.client.model_infer(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{}", e.message());
        assert!(
            e.message().contains(needle),
            "{:?} lacks {needle:?}",
            e.message()
        );
    }
    let e = s
        .client
        .model_metadata(ModelMetadataRequest {
            name: "iris".into(),
            version: "7".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("no version \"7\""), "{}", e.message());

    // grpc.health.v1, which the model block's gRPC service check asks.
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    for service in ["", "inference.GRPCInferenceService"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    // An RPC of Triton's that edge does not serve.
    let mut grpc = tonic::client::Grpc::new(s.channel.clone());
    grpc.ready().await.unwrap();
    let e = grpc
        .unary::<_, ModelReadyResponse, _>(
            tonic::Request::new(ModelReadyRequest {
                name: "iris".into(),
                version: String::new(),
            }),
            "/inference.GRPCInferenceService/ModelStatistics"
                .parse()
                .unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(
        e.message()
            .contains("edge does not serve inference.GRPCInferenceService/ModelStatistics"),
        "{}",
        e.message()
    );
    assert!(
        s.client
            .server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
}

#[tokio::test]
async fn int_contents_out_of_range_for_int8_are_refused() {
    let mut s = start("backend/test_sub_int8.onnx", "m").await;
    let meta = s
        .client
        .model_metadata(ModelMetadataRequest {
            name: "m".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let shape = meta.inputs[0].shape.clone();
    let n: i64 = shape.iter().product();
    let mut values = vec![1; n as usize];
    values[2] = 300;
    let inputs = meta
        .inputs
        .iter()
        .map(|i| {
            let mut t = input(&i.name, "INT8", &shape);
            t.contents = Some(InferTensorContents {
                int_contents: values.clone(),
                ..Default::default()
            });
            t
        })
        .collect();
    let e = s
        .client
        .model_infer(ModelInferRequest {
            model_name: "m".into(),
            inputs,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .contains("element 2 (300) is out of range for INT8"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn a_stream_answers_each_request_in_order_with_errors_in_band() {
    let mut s = start("iris.onnx", "iris").await;
    let (x, case) = iris_rows();
    let rows = (x.len() / 4) as i64;
    let good = |id: &str| ModelInferRequest {
        model_name: "iris".into(),
        id: id.into(),
        inputs: vec![input("X", "FP32", &[rows, 4])],
        raw_input_contents: vec![f32s(&x)],
        ..Default::default()
    };
    let mut bad = good("bad");
    bad.inputs[0].shape = vec![1, 3];
    let requests = vec![good("a"), bad, good("c")];
    let mut answers = s
        .client
        .model_stream_infer(futures_util::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(a) = answers.message().await.unwrap() {
        got.push(a);
    }
    assert_eq!(got.len(), 3);
    check_iris(got[0].infer_response.as_ref().unwrap(), &case);
    assert_eq!(got[0].infer_response.as_ref().unwrap().id, "a");
    assert!(got[1].infer_response.is_none());
    assert!(
        got[1].error_message.contains("shape [1, 3] does not match"),
        "{}",
        got[1].error_message
    );
    assert_eq!(got[2].infer_response.as_ref().unwrap().id, "c");
}

/// The repository extension over gRPC: index, unload, load, and what a
/// server with one repository refuses.
#[tokio::test]
async fn the_repository_over_grpc() {
    let mut s = start("iris.onnx", "iris").await;
    let index = |ready| RepositoryIndexRequest {
        repository_name: String::new(),
        ready,
    };
    let config = s
        .client
        .model_config(ModelConfigRequest {
            name: "iris".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert!(config.max_batch_size >= 1, "{config:?}");
    assert_eq!(config.input[0].dims, [4]);
    assert_eq!(config.input[0].data_type, DataType::TypeFp32 as i32);
    assert_eq!(config.output[0].data_type, DataType::TypeInt64 as i32);
    let got = s.client.repository_index(index(false)).await.unwrap();
    let models = got.into_inner().models;
    assert_eq!(models.len(), 1);
    assert_eq!(
        (
            models[0].name.as_str(),
            models[0].version.as_str(),
            models[0].state.as_str()
        ),
        ("iris", "1", "READY")
    );
    let mut unload = RepositoryModelUnloadRequest {
        model_name: "iris".into(),
        ..Default::default()
    };
    // tritonclient's unload_model always sends it.
    unload.parameters.insert(
        "unload_dependents".into(),
        ModelRepositoryParameter {
            parameter_choice: Some(model_repository_parameter::ParameterChoice::BoolParam(
                false,
            )),
        },
    );
    s.client.repository_model_unload(unload).await.unwrap();
    let ready = |name: &str| ModelReadyRequest {
        name: name.into(),
        version: String::new(),
    };
    let unloaded = s.client.model_ready(ready("iris")).await.unwrap();
    assert!(!unloaded.into_inner().ready);
    let e = s.client.model_ready(ready("ghost")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    let e = s
        .client
        .model_metadata(ModelMetadataRequest {
            name: "iris".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        e.message().contains("not loaded (unloaded)"),
        "{}",
        e.message()
    );
    let ready = s.client.repository_index(index(true)).await.unwrap();
    assert!(ready.into_inner().models.is_empty());
    let load = |name: &str| RepositoryModelLoadRequest {
        model_name: name.into(),
        ..Default::default()
    };
    s.client.repository_model_load(load("iris")).await.unwrap();
    let e = s
        .client
        .repository_model_load(load("ghost"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    let mut with_config = load("iris");
    with_config.parameters.insert(
        "config".into(),
        ModelRepositoryParameter {
            parameter_choice: Some(model_repository_parameter::ParameterChoice::StringParam(
                "{}".into(),
            )),
        },
    );
    let e = s
        .client
        .repository_model_load(with_config)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("\"config\" is not supported"),
        "{}",
        e.message()
    );
    let mut named = index(false);
    named.repository_name = "other".into();
    let e = s.client.repository_index(named).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}
