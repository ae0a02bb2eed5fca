//! The containerd task's `config { ... }` block: checking it and naming
//! every problem by its field.

use edge_driver::DriverError;
use serde_json::Value;
use std::path::PathBuf;

/// A checked containerd task config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TaskImageConfig {
    pub image: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub work_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub readonly_rootfs: bool,
    pub volumes: Vec<Volume>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub network_mode: NetworkMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Volume {
    pub host: PathBuf,
    pub container: String,
    pub readonly: bool,
}

/// Only host networking today; bridge networks plug in here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum NetworkMode {
    #[default]
    Host,
}

const KEYS: &[&str] = &[
    "image",
    "command",
    "args",
    "entrypoint",
    "work_dir",
    "user",
    "hostname",
    "readonly_rootfs",
    "volumes",
    "cap_add",
    "cap_drop",
    "network_mode",
];

pub(crate) fn parse(
    config: &serde_json::Map<String, Value>,
) -> Result<TaskImageConfig, DriverError> {
    if let Some(key) = config.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(DriverError::config(
            format!("config.{key}"),
            format!(
                "unknown key for the containerd driver (expected one of {})",
                KEYS.join(", ")
            ),
        ));
    }
    let image = match string(config, "image")? {
        Some(i) if !i.trim().is_empty() => i,
        Some(_) => return Err(DriverError::config("config.image", "must not be empty")),
        None => return Err(DriverError::config("config.image", "is required")),
    };
    let volumes = strings(config, "volumes")?
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            parse_volume(v).map_err(|m| DriverError::config(format!("config.volumes[{i}]"), m))
        })
        .collect::<Result<_, _>>()?;
    let readonly_rootfs = match config.get("readonly_rootfs") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(DriverError::config(
                "config.readonly_rootfs",
                "must be true or false",
            ));
        }
    };
    let network_mode = match string(config, "network_mode")?.as_deref() {
        None | Some("host") => NetworkMode::Host,
        Some(other) => {
            return Err(DriverError::config(
                "config.network_mode",
                format!("{other:?} is not supported (only \"host\")"),
            ));
        }
    };
    let cfg = TaskImageConfig {
        image,
        command: string(config, "command")?,
        args: strings(config, "args")?.unwrap_or_default(),
        entrypoint: strings(config, "entrypoint")?,
        work_dir: string(config, "work_dir")?,
        user: string(config, "user")?,
        hostname: string(config, "hostname")?,
        readonly_rootfs,
        volumes,
        cap_add: strings(config, "cap_add")?.unwrap_or_default(),
        cap_drop: strings(config, "cap_drop")?.unwrap_or_default(),
        network_mode,
    };
    if let Some(w) = &cfg.work_dir
        && !w.starts_with('/')
    {
        return Err(DriverError::config(
            "config.work_dir",
            "must be an absolute path",
        ));
    }
    for (field, caps) in [
        ("config.cap_add", &cfg.cap_add),
        ("config.cap_drop", &cfg.cap_drop),
    ] {
        for (i, c) in caps.iter().enumerate() {
            if crate::spec::capability(c).is_none() {
                return Err(DriverError::config(
                    format!("{field}[{i}]"),
                    format!("unknown capability {c:?}"),
                ));
            }
        }
    }
    Ok(cfg)
}

fn string(
    config: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<String>, DriverError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(DriverError::config(
            format!("config.{key}"),
            "must be a string",
        )),
    }
}

fn strings(
    config: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, DriverError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(DriverError::config(
                    format!("config.{key}[{i}]"),
                    "must be a string",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(DriverError::config(
            format!("config.{key}"),
            "must be a list of strings",
        )),
    }
}

/// `/host:/container`, optionally `:ro` or `:rw`.
fn parse_volume(v: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, container, readonly) = match parts[..] {
        [h, c] => (h, c, false),
        [h, c, "ro"] => (h, c, true),
        [h, c, "rw"] => (h, c, false),
        _ => {
            return Err(format!(
                "{v:?}: expected /host/path:/container/path[:ro|:rw]"
            ));
        }
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(format!("{v:?}: both paths must be absolute"));
    }
    if container.split('/').any(|c| c == "..") {
        return Err(format!("{v:?}: container path must not contain .."));
    }
    Ok(Volume {
        host: PathBuf::from(host),
        container: container.to_string(),
        readonly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn parses_a_full_config() {
        let c = parse(&cfg(json!({
            "image": "busybox",
            "command": "httpd",
            "args": ["-f", "-p", "8080"],
            "entrypoint": ["/bin/sh", "-c"],
            "work_dir": "/www",
            "user": "1000:1000",
            "readonly_rootfs": true,
            "volumes": ["/srv/data:/data:ro", "/tmp/x:/x"],
            "cap_add": ["NET_ADMIN"],
            "cap_drop": ["cap_chown"],
        })))
        .unwrap();
        assert_eq!(c.image, "busybox");
        assert_eq!(c.command.as_deref(), Some("httpd"));
        assert_eq!(c.args, ["-f", "-p", "8080"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c"]);
        assert!(c.readonly_rootfs);
        assert_eq!(
            c.volumes[0],
            Volume {
                host: "/srv/data".into(),
                container: "/data".into(),
                readonly: true
            }
        );
        assert!(!c.volumes[1].readonly);
        assert_eq!(c.network_mode, NetworkMode::Host);
    }

    #[test]
    fn names_the_bad_field() {
        let field = |v| match parse(&cfg(v)) {
            Err(DriverError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(field(json!({})), "config.image");
        assert_eq!(field(json!({"image": " "})), "config.image");
        assert_eq!(field(json!({"image": "a", "command": 1})), "config.command");
        assert_eq!(
            field(json!({"image": "a", "args": ["x", 2]})),
            "config.args[1]"
        );
        assert_eq!(
            field(json!({"image": "a", "volumes": ["rel:/x"]})),
            "config.volumes[0]"
        );
        assert_eq!(
            field(json!({"image": "a", "volumes": ["/a:/b:rx"]})),
            "config.volumes[0]"
        );
        assert_eq!(
            field(json!({"image": "a", "work_dir": "www"})),
            "config.work_dir"
        );
        assert_eq!(
            field(json!({"image": "a", "readonly_rootfs": "yes"})),
            "config.readonly_rootfs"
        );
        assert_eq!(
            field(json!({"image": "a", "network_mode": "bridge"})),
            "config.network_mode"
        );
        assert_eq!(
            field(json!({"image": "a", "cap_add": ["FLY"]})),
            "config.cap_add[0]"
        );
        assert_eq!(
            field(json!({"image": "a", "privileged": true})),
            "config.privileged"
        );
    }
}
