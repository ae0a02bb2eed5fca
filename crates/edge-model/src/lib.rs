//! Model serving: an ONNX model (run by tract) behind the Open Inference
//! Protocol REST API with dynamic batching and Prometheus metrics
//! ([`serve`]), and the `model` driver that runs such a server as a task.

mod backends;
mod batch;
mod binary;
mod codec;
mod driver;
mod error;
mod fetch;
mod gaps;
pub mod grpc;
mod infer;
mod metrics;
mod model;
mod onnxruntime;
mod pages;
pub mod raw;
mod repo;
mod server;

pub use backends::{
    BACKENDS_ATTRIBUTE, BackendStatus, ONNXRUNTIME_VERSION_ATTRIBUTE,
    attributes as backend_attributes, backends,
};
pub use driver::{DRIVER_NAME, ModelBlock, ModelDriver, check_config};
pub use error::ModelError;
pub use model::{Backend, DataType, Model, TensorInfo};
pub use onnxruntime::{LIBRARY_ENV as ONNXRUNTIME_LIB_ENV, RuntimeInfo, runtime_info};
pub use pages::{keep_freed_memory, release_startup_pages};
pub use repo::{IndexEntry, ModelSource, REPOSITORY_FILE, Repository, Served, scan, valid_name};
pub use server::{ServeConfig, Server, bind, serve};
