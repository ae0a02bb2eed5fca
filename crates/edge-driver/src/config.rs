//! Typed task `config` blocks: each driver declares its block as a serde
//! type, and the same decoding runs when a job is submitted (through the
//! registry the binary hands to validation) and when the agent starts the
//! task, so a misspelled key is refused before it is stored.

use crate::DriverError;
use nix::sys::signal::Signal;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::str::FromStr;

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

/// Replaces `${NAME}` (also `${env.NAME}`, and Nomad's `${NOMAD_X}` as
/// `${EDGE_X}`) with its value in `env`; unknown names and an unclosed `${`
/// are left as written, so a literal `${X}` reaches the task untouched. The
/// one interpolation of task config and env, for the agent and the drivers.
pub fn interpolate(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = after[..end].trim();
                let key = name
                    .strip_prefix("env.")
                    .unwrap_or(name)
                    .replacen("NOMAD_", "EDGE_", 1);
                match env.get(&key) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// [`interpolate`] through every string of a JSON value.
pub fn interpolate_value(v: &Value, env: &BTreeMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(interpolate(s, env)),
        Value::Array(a) => Value::Array(a.iter().map(|x| interpolate_value(x, env)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), interpolate_value(x, env)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A signal by name, as jobs and `edge alloc signal` give it: `SIGHUP`,
/// `HUP` or `hup`.
pub fn parse_signal(name: &str) -> Result<Signal, DriverError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full)
        .map_err(|_| DriverError::config("signal", format!("unknown signal {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_signals() {
        assert_eq!(parse_signal("SIGHUP").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal(" KILL ").unwrap(), Signal::SIGKILL);
        assert!(matches!(
            parse_signal("SIGNOPE"),
            Err(DriverError::Config { .. })
        ));
    }
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

    #[test]
    fn known_names_only_and_nomad_spelling() {
        let env = BTreeMap::from([
            ("NAME".to_string(), "web".to_string()),
            ("EDGE_PORT_http".to_string(), "8080".to_string()),
        ]);
        assert_eq!(interpolate("--port=${EDGE_PORT_http}", &env), "--port=8080");
        assert_eq!(
            interpolate("--port=${NOMAD_PORT_http}", &env),
            "--port=8080"
        );
        assert_eq!(interpolate("${env.NAME}-${ NAME }", &env), "web-web");
        assert_eq!(interpolate("${X} and ${NAME}", &env), "${X} and web");
        assert_eq!(interpolate("tail ${NAME", &env), "tail ${NAME");
        assert_eq!(interpolate("$NAME {NAME} $", &env), "$NAME {NAME} $");
        assert_eq!(interpolate("${}", &env), "${}");
        assert_eq!(
            interpolate_value(&serde_json::json!({"a": ["${NAME}", 1]}), &env),
            serde_json::json!({"a": ["web", 1]})
        );
    }
}
