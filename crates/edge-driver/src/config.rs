//! Typed task `config` blocks: each driver declares its block as a serde
//! type, and the same decoding runs when a job is submitted (through the
//! registry the binary hands to validation) and when the agent starts the
//! task, so a misspelled key is refused before it is stored.

use crate::DriverError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Decodes a `config` block into a driver's config type; a failure names
/// the field (`config.args[1]`, `config.comand`) and gives serde's reason.
pub fn decode<T: DeserializeOwned>(config: &Map<String, Value>) -> Result<T, DriverError> {
    serde_path_to_error::deserialize(Value::Object(config.clone())).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde names a missing key only in its message; the field names it too.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'));
        let field = match (path.as_str(), missing) {
            (".", Some(key)) => format!("config.{key}"),
            (".", None) => "config".to_string(),
            (path, Some(key)) => format!("config.{path}.{key}"),
            (path, None) => format!("config.{path}"),
        };
        DriverError::config(field, message)
    })
}

/// A check's outcome as edge-spec's validation takes it: the field (from
/// `config`) and the message.
pub fn finding(checked: Result<(), DriverError>) -> Result<(), (String, String)> {
    checked.map_err(|e| match e {
        DriverError::Config { field, message } => (field, message),
        other => ("config".to_string(), other.to_string()),
    })
}

/// Whether `s` still holds a `${...}` the agent fills in: checks of a value's
/// shape wait for the agent then, since at submit only its template is known.
pub fn is_interpolated(s: &str) -> bool {
    s.find("${").is_some_and(|start| s[start..].contains('}'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        command: String,
        args: Option<Vec<String>>,
    }

    fn field(v: Value) -> (String, String) {
        match decode::<Cfg>(v.as_object().expect("object")) {
            Err(DriverError::Config { field, message }) => (field, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_good_block() {
        let c: Cfg = decode(json!({"command": "x"}).as_object().expect("object")).unwrap();
        assert_eq!((c.command.as_str(), c.args), ("x", None));
    }

    #[test]
    fn names_the_failing_field() {
        let (f, m) = field(json!({"comand": "x"}));
        assert_eq!(f, "config.comand");
        assert_eq!(m, "unknown field `comand`, expected `command` or `args`");
        assert_eq!(
            field(json!({"command": "x", "args": ["a", 1]})).0,
            "config.args[1]"
        );
        let (f, m) = field(json!({}));
        assert_eq!(
            (f.as_str(), m.as_str()),
            ("config.command", "missing field `command`")
        );
    }

    #[test]
    fn interpolation_needs_both_braces() {
        assert!(is_interpolated("${EDGE_PORT_http}"));
        assert!(is_interpolated("/x/${NOMAD_ALLOC_DIR}/y"));
        assert!(!is_interpolated("${unclosed"));
        assert!(!is_interpolated("$HOME"));
    }
}
