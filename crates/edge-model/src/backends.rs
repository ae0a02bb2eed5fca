//! Which backends can run models here: what `edge model backends` prints,
//! and what the model driver turns into node attributes so that a job with
//! `backend = "onnxruntime"` is placed only where ONNX Runtime opens.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One backend on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub available: bool,
    /// The engine's version where it says one (ONNX Runtime's library).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where it comes from: `built in`, or the library it was opened by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Why it is not available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The node attribute listing the available backends, comma-separated
/// (`tract,onnxruntime`): a `set_contains` constraint reads it.
pub const BACKENDS_ATTRIBUTE: &str = "model.backends";
/// The node attribute holding ONNX Runtime's version where it opens.
pub const ONNXRUNTIME_VERSION_ATTRIBUTE: &str = "model.onnxruntime.version";

/// Both backends as this process finds them; ONNX Runtime is opened from
/// `library`, else `$EDGE_ONNXRUNTIME_LIB`, else the loader's search path,
/// as `edge model serve --backend onnxruntime` would open it.
pub fn backends(library: Option<&Path>) -> Vec<BackendStatus> {
    let ort = match crate::onnxruntime::runtime_info(library) {
        Ok(info) => BackendStatus {
            name: "onnxruntime".to_string(),
            available: true,
            version: Some(info.version),
            source: Some(info.library.display().to_string()),
            error: None,
        },
        Err(e) => BackendStatus {
            name: "onnxruntime".to_string(),
            available: false,
            version: None,
            source: None,
            error: Some(e.to_string()),
        },
    };
    vec![tract(), ort]
}

/// tract, built into every edge binary.
pub fn tract() -> BackendStatus {
    BackendStatus {
        name: "tract".to_string(),
        available: true,
        version: None,
        source: Some("built in".to_string()),
        error: None,
    }
}

/// The node attributes (under the model driver's `model.` prefix) that say
/// which backends a node has.
pub fn attributes(statuses: &[BackendStatus]) -> BTreeMap<String, String> {
    let names: Vec<&str> = statuses
        .iter()
        .filter(|s| s.available)
        .map(|s| s.name.as_str())
        .collect();
    let mut out = BTreeMap::from([(BACKENDS_ATTRIBUTE.to_string(), names.join(","))]);
    if let Some(v) = statuses
        .iter()
        .find(|s| s.available && s.name == "onnxruntime")
        .and_then(|s| s.version.clone())
    {
        out.insert(ONNXRUNTIME_VERSION_ATTRIBUTE.to_string(), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_leaves_onnxruntime_out_of_the_attributes() {
        let statuses = backends(Some(Path::new("/nonexistent/libonnxruntime.so")));
        assert_eq!(statuses.len(), 2);
        assert!(statuses[0].available);
        assert!(!statuses[1].available);
        let err = statuses[1].error.as_deref().unwrap_or_default();
        assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
        let attrs = attributes(&statuses);
        assert_eq!(
            attrs.get(BACKENDS_ATTRIBUTE).map(String::as_str),
            Some("tract")
        );
        assert!(!attrs.contains_key(ONNXRUNTIME_VERSION_ATTRIBUTE));
    }

    /// The agent puts driver attributes under `driver.`; model blocks
    /// constrain on the result.
    #[test]
    fn the_attribute_is_the_one_model_blocks_constrain_on() {
        assert_eq!(
            format!("${{attr.driver.{BACKENDS_ATTRIBUTE}}}"),
            edge_spec::model::BACKENDS_ATTRIBUTE
        );
    }

    #[test]
    fn an_open_library_adds_onnxruntime_and_its_version() {
        let statuses = [
            BackendStatus {
                name: "tract".to_string(),
                available: true,
                version: None,
                source: Some("built in".to_string()),
                error: None,
            },
            BackendStatus {
                name: "onnxruntime".to_string(),
                available: true,
                version: Some("1.32.0".to_string()),
                source: Some("/opt/ort/libonnxruntime.so".to_string()),
                error: None,
            },
        ];
        let attrs = attributes(&statuses);
        assert_eq!(
            attrs.get(BACKENDS_ATTRIBUTE).map(String::as_str),
            Some("tract,onnxruntime")
        );
        assert_eq!(
            attrs.get(ONNXRUNTIME_VERSION_ATTRIBUTE).map(String::as_str),
            Some("1.32.0")
        );
        let json = serde_json::to_string(&statuses).unwrap();
        let back: Vec<BackendStatus> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, statuses);
    }
}
