//! The table of every route the API serves, shared by the router, the
//! metrics (whose labels come only from it) and the OpenAPI test.

/// Every route the router serves, as `(method, path)`; `api/openapi.yaml`
/// must list exactly these (a test checks both ways).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/job/{id}"),
    ("POST", "/v1/job/{id}"),
    ("DELETE", "/v1/job/{id}"),
    ("POST", "/v1/job/{id}/plan"),
    ("GET", "/v1/job/{id}/versions"),
    ("POST", "/v1/job/{id}/revert"),
    ("GET", "/v1/job/{id}/allocations"),
    ("GET", "/v1/job/{id}/evaluations"),
    ("GET", "/v1/allocations"),
    ("GET", "/v1/allocation/{id}"),
    ("GET", "/v1/client/allocation/{id}/logs"),
    ("GET", "/v1/evaluations"),
    ("GET", "/v1/evaluation/{id}"),
    ("GET", "/v1/nodes"),
    ("GET", "/v1/node/{id}"),
    ("POST", "/v1/node/{id}/drain"),
    ("POST", "/v1/node/{id}/eligibility"),
    ("POST", "/v1/node/{id}/gc"),
    ("POST", "/v1/agent/register"),
    ("POST", "/v1/agent/heartbeat/{id}"),
    ("GET", "/v1/agent/allocs/{id}"),
    ("POST", "/v1/agent/allocs/{id}"),
    ("GET", "/v1/services"),
    ("GET", "/v1/service/{name}"),
    ("GET", "/v1/catalog"),
    ("GET", "/v1/event/stream"),
    ("GET", "/v1/status/health"),
    ("GET", "/v1/metrics"),
];
