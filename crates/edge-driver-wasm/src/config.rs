//! The wasm task's `config { ... }` block: checking it and filling `${NAME}`
//! from the task env.

use edge_driver::DriverError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How the module is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A WASI command: `_start` runs once, its exit code ends the task;
    /// `timeout` bounds its run time.
    Command { timeout: Option<Duration> },
    /// A WAGI handler: a fresh instance per HTTP request on the task's port.
    Http {
        port_label: String,
        timeout: Duration,
    },
}

/// Where the module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Path(String),
    Url { url: String, sha256: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WasmTaskConfig {
    pub source: Source,
    pub args: Vec<String>,
    pub mode: Mode,
}

const KEYS: &str = "module, sha256, args, mode, port, timeout";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn parse(
    config: &serde_json::Map<String, Value>,
    env: &BTreeMap<String, String>,
) -> Result<WasmTaskConfig, DriverError> {
    if let Some(key) = config.keys().find(|k| {
        !matches!(
            k.as_str(),
            "module" | "sha256" | "args" | "mode" | "port" | "timeout"
        )
    }) {
        return Err(DriverError::config(
            format!("config.{key}"),
            format!("unknown key for the wasm driver (expected {KEYS})"),
        ));
    }
    let module = match string(config, "module")? {
        Some(m) if !m.trim().is_empty() => interpolate(m, env),
        Some(_) => return Err(DriverError::config("config.module", "must not be empty")),
        None => return Err(DriverError::config("config.module", "is required")),
    };
    let sha256 = match string(config, "sha256")? {
        None => None,
        Some(s) => {
            let s = s.trim().to_ascii_lowercase();
            if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(DriverError::config(
                    "config.sha256",
                    "must be 64 hexadecimal digits",
                ));
            }
            Some(s)
        }
    };
    let source = if module.starts_with("http://") || module.starts_with("https://") {
        Source::Url {
            url: module,
            sha256,
        }
    } else if sha256.is_some() {
        return Err(DriverError::config(
            "config.sha256",
            "only applies to a module given by http(s) URL",
        ));
    } else {
        Source::Path(module)
    };
    let args = match config.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(interpolate(s, env)),
                _ => Err(DriverError::config(
                    format!("config.args[{i}]"),
                    "must be a string",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(DriverError::config(
                "config.args",
                "must be a list of strings",
            ));
        }
    };
    let port = string(config, "port")?;
    let timeout = match string(config, "timeout")? {
        None => None,
        Some(t) => Some(humantime::parse_duration(t).map_err(|e| {
            DriverError::config("config.timeout", format!("{e} (expected e.g. \"30s\")"))
        })?),
    };
    let mode = match string(config, "mode")?.unwrap_or("command") {
        _ if timeout.is_some_and(|t| t.is_zero()) => {
            return Err(DriverError::config("config.timeout", "must be above zero"));
        }
        "command" => {
            if port.is_some() {
                return Err(DriverError::config(
                    "config.port",
                    "only applies to mode = \"http\"",
                ));
            }
            Mode::Command { timeout }
        }
        "http" => {
            let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
            Mode::Http {
                port_label: port.unwrap_or("http").to_string(),
                timeout,
            }
        }
        other => {
            return Err(DriverError::config(
                "config.mode",
                format!("unknown mode {other:?} (expected \"command\" or \"http\")"),
            ));
        }
    };
    Ok(WasmTaskConfig { source, args, mode })
}

fn string<'a>(
    config: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, DriverError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DriverError::config(
            format!("config.{key}"),
            "must be a string",
        )),
    }
}

/// Replaces `${NAME}` with `env[NAME]`; unknown names are left as they are.
fn interpolate(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            break;
        };
        match env.get(&after[..end]) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[start..start + 3 + end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn command_is_the_default_mode() {
        let env = BTreeMap::from([("NAME".to_string(), "edge".to_string())]);
        let c = parse(
            &cfg(json!({"module": "/m.wasm", "args": ["hi ${NAME}", "${NOPE}"]})),
            &env,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Command { timeout: None });
        assert_eq!(c.source, Source::Path("/m.wasm".into()));
        assert_eq!(c.args, vec!["hi edge", "${NOPE}"]);
    }

    #[test]
    fn http_mode_defaults_port_and_timeout() {
        let c = parse(
            &cfg(json!({"module": "https://x/m.wasm", "mode": "http"})),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(
            c.mode,
            Mode::Http {
                port_label: "http".into(),
                timeout: DEFAULT_TIMEOUT
            }
        );
        assert_eq!(
            c.source,
            Source::Url {
                url: "https://x/m.wasm".into(),
                sha256: None
            }
        );
    }

    #[test]
    fn bad_config_names_the_field() {
        let cases = [
            (json!({}), "config.module"),
            (json!({"module": "m", "mode": "daemon"}), "config.mode"),
            (json!({"module": "m", "args": "x"}), "config.args"),
            (json!({"module": "m", "args": [1]}), "config.args[0]"),
            (json!({"module": "m", "port": "http"}), "config.port"),
            (json!({"module": "m", "sha256": "ab"}), "config.sha256"),
            (
                json!({"module": "m", "mode": "http", "timeout": "soon"}),
                "config.timeout",
            ),
            (json!({"module": "m", "timeout": "0s"}), "config.timeout"),
            (json!({"module": "m", "command": "x"}), "config.command"),
        ];
        for (v, field) in cases {
            match parse(&cfg(v.clone()), &BTreeMap::new()) {
                Err(DriverError::Config { field: f, .. }) => assert_eq!(f, field, "{v}"),
                other => panic!("{v}: expected a config error, got {other:?}"),
            }
        }
    }
}
