//! The vocabulary of edge: job specs, nodes, allocations and evaluations, plus
//! parsing and validation of job files. Pure: no IO beyond what the caller hands in.

pub mod acl;
pub mod alloc;
pub mod artifact;
pub mod deployment;
mod docker;
pub mod duration;
pub mod envfile;
pub mod error;
pub mod eval;
pub mod example;
mod hcl;
pub mod job;
mod json;
pub mod limits;
pub mod model;
pub mod namespace;
pub mod network;
pub mod node;
pub mod objects;
mod parse;
pub mod periodic;
mod prefer;
pub mod scaling;
pub mod template;
pub mod validate;
pub mod version;
pub mod volume;

pub use crate::hcl::{job_to_hcl, parse_hcl};
pub use alloc::*;
pub use artifact::{Artifact, ArtifactMode};
pub use deployment::*;
pub use error::{Diagnostic, Location, SpecError};
pub use eval::*;
pub use example::{EXAMPLE_JOB, EXAMPLE_MODEL_JOB};
pub use job::*;
pub use json::parse_json;
pub use namespace::{DEFAULT_NAMESPACE, Namespace, job_key, service_key};
pub use network::{OverlayNetwork, OverlayPool, Subnet};
pub use node::*;
pub use objects::{ConfigObject, DataRef, SecretObject};
pub use parse::{Files, ParseOptions, Parsed, parse_job_file};
pub use scaling::{ScaleNote, Scaling, ScalingRules};
pub use template::{ChangeMode, Template};
pub use validate::{ConfigCheck, DriverConfigs, NameKind, check_name, validate, validate_with};
pub use volume::Volume;
