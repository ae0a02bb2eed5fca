//! The JSON Schemas of the request and response bodies, generated from the
//! types themselves so that the API contract cannot drift from the code:
//! `components/schemas` of `api/openapi.yaml` is exactly this, which
//! crates/edge-server/tests/openapi.rs checks (and rewrites with
//! `EDGE_BLESS=1`). They describe what the server accepts, so fields with
//! defaults are optional.

use crate::types::*;
use edge_spec::{Allocation, Deployment, Evaluation, Job, Node};
use schemars::Schema;
use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use serde_json::{Map, Value};

/// Every body schema of the API by type name, with the types they refer
/// to; types schemars inlines (maps, options) get no name of their own.
pub fn components() -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3()
        .with_transform(RecursiveTransform(integer_bounds))
        .into_generator();
    generator.subschema_for::<ErrorBody>();
    generator.subschema_for::<JobRegisterRequest>();
    generator.subschema_for::<JobRegisterResponse>();
    generator.subschema_for::<JobPlanRequest>();
    generator.subschema_for::<JobPlanResponse>();
    generator.subschema_for::<JobListStub>();
    generator.subschema_for::<JobRevertRequest>();
    generator.subschema_for::<JobScaleRequest>();
    generator.subschema_for::<JobDispatchRequest>();
    generator.subschema_for::<JobLaunchResponse>();
    generator.subschema_for::<Job>();
    generator.subschema_for::<EvalResponse>();
    generator.subschema_for::<AllocListStub>();
    generator.subschema_for::<Allocation>();
    generator.subschema_for::<Evaluation>();
    generator.subschema_for::<Deployment>();
    generator.subschema_for::<DeploymentPromoteRequest>();
    generator.subschema_for::<DeploymentAllocHealthRequest>();
    generator.subschema_for::<DeploymentUpdateResponse>();
    generator.subschema_for::<NodeListStub>();
    generator.subschema_for::<JobVersionDiff>();
    generator.subschema_for::<TokenGrants>();
    generator.subschema_for::<ModelListStub>();
    generator.subschema_for::<Node>();
    generator.subschema_for::<NodeDrainRequest>();
    generator.subschema_for::<NodeEligibilityRequest>();
    generator.subschema_for::<GcResponse>();
    generator.subschema_for::<RegisterRequest>();
    generator.subschema_for::<RegisterResponse>();
    generator.subschema_for::<HeartbeatResponse>();
    generator.subschema_for::<CsrRequest>();
    generator.subschema_for::<CsrResponse>();
    generator.subschema_for::<NodeRevokeResponse>();
    generator.subschema_for::<TokenRotateResponse>();
    generator.subschema_for::<AgentAlloc>();
    generator.subschema_for::<AgentAllocChanges>();
    generator.subschema_for::<AllocUpdateRequest>();
    generator.subschema_for::<AllocUpdateResponse>();
    generator.subschema_for::<ServiceListStub>();
    generator.subschema_for::<ServiceInstance>();
    generator.subschema_for::<Catalog>();
    generator.subschema_for::<StreamEvent>();
    generator.subschema_for::<HealthResponse>();
    generator.subschema_for::<AclPolicyApplyRequest>();
    generator.subschema_for::<AclPolicyListStub>();
    generator.subschema_for::<edge_spec::acl::AclPolicy>();
    generator.subschema_for::<AclTokenCreateRequest>();
    generator.subschema_for::<AclTokenInfo>();
    generator.subschema_for::<AclTokenCreated>();
    generator.subschema_for::<AclWriteResponse>();
    generator.subschema_for::<edge_spec::Namespace>();
    generator.subschema_for::<NamespaceApplyRequest>();
    generator.subschema_for::<NamespaceDeleteResponse>();
    generator.subschema_for::<edge_spec::Volume>();
    generator.subschema_for::<VolumeDeleteResponse>();
    generator.subschema_for::<edge_spec::ConfigObject>();
    generator.subschema_for::<edge_spec::SecretObject>();
    generator.subschema_for::<ObjectPutRequest>();
    generator.subschema_for::<ObjectWriteResponse>();
    generator.subschema_for::<KeyringRotateResponse>();
    generator.subschema_for::<AllocData>();
    generator.subschema_for::<edge_spec::OverlayNetwork>();
    generator.subschema_for::<AgentNetworks>();
    generator.subschema_for::<LoadReport>();
    generator.subschema_for::<JobScaleStatus>();
    generator.take_definitions(true)
}

/// schemars gives an integer's width only as `format` (`uint32`), which
/// request generators ignore: without `minimum` and `maximum` they send
/// numbers the server cannot read and rightly refuses.
fn integer_bounds(schema: &mut Schema) {
    let (min, max): (Value, Value) = match schema.get("format").and_then(Value::as_str) {
        Some("uint8") => (0.into(), u8::MAX.into()),
        Some("uint16") => (0.into(), u16::MAX.into()),
        Some("uint32") => (0.into(), u32::MAX.into()),
        Some("uint64") => (0.into(), u64::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("int64") => (i64::MIN.into(), i64::MAX.into()),
        _ => return,
    };
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("minimum").or_insert(min);
        obj.entry("maximum").or_insert(max);
    }
}
