//! The runtime side of the CNI protocol (spec 1.0): a configuration list's
//! plugins run in order for ADD, each handed the result of the one before,
//! and in reverse order for DEL, each handed the cached result of ADD; a
//! plugin gets the runtime values (port mappings) only for the
//! capabilities its configuration declares. This is what libcni does for
//! containerd and Nomad; the plugins themselves do the netlink and
//! iptables work.

use crate::error::NetError;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A plugin that takes longer has hung (iptables waits for its lock with
/// `-w`, and a stuck lock must not hold an allocation forever).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One configuration list with the directories its plugins live in.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub name: String,
    pub version: String,
    pub plugins: Vec<Value>,
    pub dirs: Vec<PathBuf>,
}

/// The container-side facts of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// Keyed by capability name (`portMappings`).
    pub runtime: &'a Map<String, Value>,
}

fn plugin_type(plugin: &Value) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

impl Chain {
    /// The first directory holding the plugin `ty`.
    pub fn find(&self, ty: &str) -> Option<PathBuf> {
        // A type is a file name: a path in it would run any binary.
        if ty.is_empty() || ty.contains('/') || ty.starts_with('.') {
            return None;
        }
        self.dirs.iter().map(|d| d.join(ty)).find(|p| p.is_file())
    }

    /// Every plugin type of the list that no directory holds.
    pub fn missing(&self) -> Vec<String> {
        self.plugins
            .iter()
            .map(|p| plugin_type(p).to_string())
            .filter(|t| self.find(t).is_none())
            .collect()
    }

    /// What plugin `plugin` reads on stdin: its own configuration plus the
    /// list's name and version, the previous result, and the runtime
    /// values of the capabilities it declares.
    pub fn plugin_config(
        &self,
        plugin: &Value,
        prev: Option<&Value>,
        runtime: &Map<String, Value>,
    ) -> Value {
        let mut conf = plugin.as_object().cloned().unwrap_or_default();
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf.insert("cniVersion".into(), Value::String(self.version.clone()));
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.clone());
        }
        let wanted: Map<String, Value> = conf
            .get("capabilities")
            .and_then(Value::as_object)
            .map(|caps| {
                caps.iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .filter_map(|(k, _)| runtime.get(k).map(|v| (k.clone(), v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        if !wanted.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(wanted));
        }
        Value::Object(conf)
    }

    /// Runs ADD through the list and returns the last plugin's result.
    pub async fn add(&self, call: Call<'_>) -> Result<Value, NetError> {
        let mut prev: Option<Value> = None;
        for plugin in &self.plugins {
            let conf = self.plugin_config(plugin, prev.as_ref(), call.runtime);
            let out = self.exec(plugin_type(plugin), "ADD", call, &conf).await?;
            prev = Some(
                serde_json::from_slice(&out).map_err(|source| NetError::Result {
                    plugin: plugin_type(plugin).to_string(),
                    source,
                })?,
            );
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// Runs DEL through the list in reverse. Every plugin is called even
    /// when one fails (what the others hold must still go); the first
    /// failure is returned.
    pub async fn del(&self, call: Call<'_>, result: Option<&Value>) -> Result<(), NetError> {
        let mut first = None;
        for plugin in self.plugins.iter().rev() {
            let conf = self.plugin_config(plugin, result, call.runtime);
            if let Err(e) = self.exec(plugin_type(plugin), "DEL", call, &conf).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    async fn exec(
        &self,
        ty: &str,
        command: &'static str,
        call: Call<'_>,
        conf: &Value,
    ) -> Result<Vec<u8>, NetError> {
        let started = std::time::Instant::now();
        let out = self.exec_inner(ty, command, call, conf).await;
        tracing::debug!(
            plugin = ty,
            command,
            container = call.container_id,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "CNI plugin ran"
        );
        out
    }

    async fn exec_inner(
        &self,
        ty: &str,
        command: &'static str,
        call: Call<'_>,
        conf: &Value,
    ) -> Result<Vec<u8>, NetError> {
        let plugin_err = |message: String| NetError::Plugin {
            plugin: ty.to_string(),
            command,
            container: call.container_id.to_string(),
            message,
        };
        let path = self.find(ty).ok_or_else(|| NetError::MissingPlugin {
            plugin: ty.to_string(),
            dirs: self.path_var(),
        })?;
        let mut child = tokio::process::Command::new(&path)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", call.container_id)
            .env("CNI_NETNS", call.netns)
            .env("CNI_IFNAME", call.ifname)
            .env("CNI_PATH", self.path_var())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| NetError::io("run", &path, e))?;
        let input = serde_json::to_vec(conf).unwrap_or_default();
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&input)
                .await
                .map_err(|e| NetError::io("write to", &path, e))?;
        }
        let out = tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| plugin_err(format!("no answer within {PLUGIN_TIMEOUT:?}")))?
            .map_err(|e| NetError::io("wait for", &path, e))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(plugin_err(error_message(&out.stdout, &out.stderr)))
    }

    fn path_var(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        dirs.join(":")
    }
}

/// A plugin's error: the spec's `{"code", "msg", "details"}` on stdout,
/// else whatever it printed.
pub(crate) fn error_message(stdout: &[u8], stderr: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(stdout) {
        let msg = v.get("msg").and_then(Value::as_str).unwrap_or_default();
        let details = v.get("details").and_then(Value::as_str).unwrap_or_default();
        let code = v.get("code").and_then(Value::as_u64);
        if !msg.is_empty() {
            let mut s = msg.to_string();
            if !details.is_empty() {
                s.push_str(": ");
                s.push_str(details);
            }
            if let Some(code) = code {
                s.push_str(&format!(" (code {code})"));
            }
            return s;
        }
    }
    let text = String::from_utf8_lossy(if stdout.trim_ascii().is_empty() {
        stderr
    } else {
        stdout
    });
    let text = text.trim();
    if text.is_empty() {
        "failed without a message".to_string()
    } else {
        text.chars().take(2000).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain() -> Chain {
        Chain {
            name: "edge".into(),
            version: "1.0.0".into(),
            plugins: vec![
                json!({"type": "bridge", "bridge": "edge0"}),
                json!({"type": "portmap", "capabilities": {"portMappings": true, "ipRanges": false}}),
            ],
            dirs: vec![PathBuf::from("/nonexistent")],
        }
    }

    #[test]
    fn runtime_values_reach_only_plugins_with_the_capability() {
        let c = chain();
        let mut runtime = Map::new();
        runtime.insert("portMappings".into(), json!([{"hostPort": 80}]));
        runtime.insert("ipRanges".into(), json!([]));
        let prev = json!({"ips": []});
        let bridge = c.plugin_config(&c.plugins[0], None, &runtime);
        assert_eq!(
            bridge,
            json!({"type": "bridge", "bridge": "edge0", "name": "edge", "cniVersion": "1.0.0"})
        );
        let portmap = c.plugin_config(&c.plugins[1], Some(&prev), &runtime);
        assert_eq!(
            portmap["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 80}]})
        );
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(portmap["name"], "edge");
    }

    #[test]
    fn plugin_types_are_file_names() {
        let c = Chain {
            dirs: vec![PathBuf::from("/usr/bin")],
            ..chain()
        };
        assert_eq!(c.find("../bin/sh"), None);
        assert_eq!(c.find(""), None);
        assert_eq!(
            c.missing(),
            vec!["bridge".to_string(), "portmap".to_string()]
        );
    }

    #[test]
    fn errors_read_the_spec_form_then_the_text() {
        let spec =
            br#"{"code": 11, "msg": "failed to allocate", "details": "no IP addresses available"}"#;
        assert_eq!(
            error_message(spec, b""),
            "failed to allocate: no IP addresses available (code 11)"
        );
        assert_eq!(error_message(b"", b"boom\n"), "boom");
        assert_eq!(error_message(b"", b""), "failed without a message");
    }
}
