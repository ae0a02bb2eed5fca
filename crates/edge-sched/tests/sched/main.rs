//! Scheduler behaviour end to end: plans for service, batch and system jobs
//! against small clusters, applied in turn the way the server would.

mod common;
mod deployments;
mod feasibility;
mod fuzz;
mod order;
mod preferences;
mod properties;
mod rolling;
mod service;
mod system;
mod volumes;
