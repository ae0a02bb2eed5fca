//! Model serving: an ONNX model (run by tract) behind the Open Inference
//! Protocol REST API with dynamic batching and Prometheus metrics
//! ([`serve`]), and the `model` driver that runs such a server as a task.

mod batch;
mod binary;
mod codec;
mod driver;
mod error;
mod fetch;
pub mod grpc;
mod infer;
mod metrics;
mod model;
mod pages;
pub mod raw;
mod server;

pub use driver::{DRIVER_NAME, ModelBlock, ModelDriver, check_config};
pub use error::ModelError;
pub use model::{DataType, Model, TensorInfo};
pub use pages::release_startup_pages;
pub use server::{ServeConfig, Server, bind, serve};

/// Every model is served as version "1": a new model file is a new job
/// version, not a second model version in one server.
pub const MODEL_VERSION: &str = "1";
