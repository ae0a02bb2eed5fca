//! The wasm task's `config { ... }` block: its schema, checking it and filling `${NAME}`
//! from the task env.

use edge_driver::DriverError;
use edge_driver::config::interpolate;
use serde::Deserialize;
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

/// The wasm driver's `config` block as written in a job: the one schema,
/// checked at submit and again on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmBlock {
    pub module: String,
    pub sha256: Option<String>,
    pub args: Option<Vec<String>>,
    pub mode: Option<String>,
    pub port: Option<String>,
    pub timeout: Option<String>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The submit-time check of a wasm task's `config` block. Values that
/// still hold a `${...}` are checked on the agent, once filled in.
pub fn check_config(config: &serde_json::Map<String, Value>) -> Result<(), DriverError> {
    let block: WasmBlock = edge_driver::config::decode(config)?;
    let literal = |s: &String| !edge_driver::config::is_interpolated(s);
    let submitted = WasmBlock {
        // Whether sha256 applies depends on the module's final value.
        module: if literal(&block.module) {
            block.module
        } else {
            "https://interpolated/".to_string()
        },
        sha256: block.sha256.filter(literal),
        timeout: block.timeout.filter(literal),
        // An interpolated mode may turn out `http`, the one that allows more.
        mode: block
            .mode
            .map(|m| if literal(&m) { m } else { "http".to_string() }),
        ..block
    };
    checked(submitted, &BTreeMap::new()).map(drop)
}

pub(crate) fn parse(
    config: &serde_json::Map<String, Value>,
    env: &BTreeMap<String, String>,
) -> Result<WasmTaskConfig, DriverError> {
    checked(edge_driver::config::decode(config)?, env)
}

fn checked(
    block: WasmBlock,
    env: &BTreeMap<String, String>,
) -> Result<WasmTaskConfig, DriverError> {
    if block.module.trim().is_empty() {
        return Err(DriverError::config("config.module", "must not be empty"));
    }
    let module = interpolate(&block.module, env);
    let sha256 = match block.sha256 {
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
    let args = block
        .args
        .unwrap_or_default()
        .iter()
        .map(|a| interpolate(a, env))
        .collect();
    let port = block.port;
    let timeout = match block.timeout {
        None => None,
        Some(t) => Some(humantime::parse_duration(&t).map_err(|e| {
            DriverError::config("config.timeout", format!("{e} (expected e.g. \"30s\")"))
        })?),
    };
    let mode = match block.mode.as_deref().unwrap_or("command") {
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
                port_label: port.unwrap_or_else(|| "http".to_string()),
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
    fn submit_check_leaves_interpolated_values_to_the_agent() {
        for v in [
            json!({"module": "${NOMAD_TASK_DIR}/m.wasm", "sha256": "${SUM}", "timeout": "${T}"}),
            json!({"module": "${URL}", "sha256": "ab".repeat(32)}),
            json!({"module": "m", "mode": "${MODE}", "port": "http"}),
        ] {
            check_config(&cfg(v.clone())).unwrap_or_else(|e| panic!("{v}: {e}"));
        }
        match check_config(&cfg(json!({"modul": "m"}))) {
            Err(DriverError::Config { field, message }) => {
                assert_eq!(field, "config.modul");
                assert!(message.contains("unknown field `modul`"), "{message}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
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
            (json!({"module": "m", "timeout": 30}), "config.timeout"),
        ];
        for (v, field) in cases {
            match parse(&cfg(v.clone()), &BTreeMap::new()) {
                Err(DriverError::Config { field: f, .. }) => assert_eq!(f, field, "{v}"),
                other => panic!("{v}: expected a config error, got {other:?}"),
            }
        }
    }
}
