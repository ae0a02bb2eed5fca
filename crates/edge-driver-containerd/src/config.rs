//! The containerd task's `config { ... }` block: its schema, checking it
//! and naming every problem by its field.

use edge_driver::DriverError;
use serde::Deserialize;
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

/// A task's own `network_mode`. Networking is the group's (`network {
/// mode = ... }`): left out, the container joins the allocation's
/// namespace, or the host's network in a host-mode group. `"host"` asks
/// for the host's network and is refused in a bridge-mode group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum NetworkMode {
    #[default]
    Group,
    Host,
}

/// The containerd driver's `config` block as written in a job: the one
/// schema, checked at submit and again on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerdBlock {
    pub image: String,
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub work_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub readonly_rootfs: Option<bool>,
    pub volumes: Option<Vec<String>>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub network_mode: Option<String>,
}

/// The submit-time check of a containerd task's `config` block. Values
/// that still hold a `${...}` are checked on the agent, once filled in.
pub fn check_config(config: &serde_json::Map<String, Value>) -> Result<(), DriverError> {
    checked(
        edge_driver::config::decode(config)?,
        edge_driver::config::is_interpolated,
    )
    .map(drop)
}

pub(crate) fn parse(
    config: &serde_json::Map<String, Value>,
) -> Result<TaskImageConfig, DriverError> {
    checked(edge_driver::config::decode(config)?, |_| false)
}

/// Checks the block's values; one that is `pending` (a `${...}` at submit)
/// is left for the agent to check once filled in.
fn checked(
    block: ContainerdBlock,
    pending: fn(&str) -> bool,
) -> Result<TaskImageConfig, DriverError> {
    if block.image.trim().is_empty() {
        return Err(DriverError::config("config.image", "must not be empty"));
    }
    let volumes = block
        .volumes
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(_, v)| !pending(v))
        .map(|(i, v)| {
            parse_volume(v).map_err(|m| DriverError::config(format!("config.volumes[{i}]"), m))
        })
        .collect::<Result<_, _>>()?;
    let network_mode = match block.network_mode.as_deref() {
        None => NetworkMode::Group,
        Some("host") => NetworkMode::Host,
        Some(m) if pending(m) => NetworkMode::Group,
        Some("bridge") => {
            return Err(DriverError::config(
                "config.network_mode",
                "networking is the group's: leave out network_mode and give the group \
                 `network { mode = \"bridge\" }`",
            ));
        }
        Some(other) => {
            return Err(DriverError::config(
                "config.network_mode",
                format!("{other:?} is not supported (only \"host\", or leave it out)"),
            ));
        }
    };
    let cfg = TaskImageConfig {
        image: block.image,
        command: block.command,
        args: block.args.unwrap_or_default(),
        entrypoint: block.entrypoint,
        work_dir: block.work_dir,
        user: block.user,
        hostname: block.hostname,
        readonly_rootfs: block.readonly_rootfs.unwrap_or(false),
        volumes,
        cap_add: block.cap_add.unwrap_or_default(),
        cap_drop: block.cap_drop.unwrap_or_default(),
        network_mode,
    };
    if let Some(w) = &cfg.work_dir
        && !w.starts_with('/')
        && !pending(w)
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
            if crate::spec::capability(c).is_none() && !pending(c) {
                return Err(DriverError::config(
                    format!("{field}[{i}]"),
                    format!("unknown capability {c:?}"),
                ));
            }
        }
    }
    Ok(cfg)
}

/// What a container may take from the host beyond its own allocation;
/// both are off unless the agent's operator turns them on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostAccess {
    /// Mount host paths outside the allocation's directory.
    pub host_volumes: bool,
    /// Add capabilities to the default set.
    pub cap_add: bool,
}

/// Refuses what `allowed` does not permit, naming the task, the field and
/// the agent option that would. A volume inside `alloc_root` (the
/// allocation's own directory, `${NOMAD_ALLOC_DIR}/...`) is always allowed.
pub(crate) fn check_host_access(
    task: &str,
    cfg: &TaskImageConfig,
    alloc_root: &std::path::Path,
    allowed: HostAccess,
) -> Result<(), DriverError> {
    use std::path::Component;
    if !allowed.host_volumes {
        for (i, v) in cfg.volumes.iter().enumerate() {
            let inside = v.host.starts_with(alloc_root)
                && !v.host.components().any(|c| c == Component::ParentDir);
            if !inside {
                return Err(DriverError::config(
                    format!("config.volumes[{i}]"),
                    format!(
                        "task {task} mounts host path {}, which this agent does not allow; start the agent with --containerd-allow-host-volumes to permit it",
                        v.host.display()
                    ),
                ));
            }
        }
    }
    if !allowed.cap_add && !cfg.cap_add.is_empty() {
        return Err(DriverError::config(
            "config.cap_add",
            format!(
                "task {task} adds capabilities {:?}, which this agent does not allow; start the agent with --containerd-allow-cap-add to permit it",
                cfg.cap_add
            ),
        ));
    }
    Ok(())
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

    #[test]
    fn host_paths_and_added_capabilities_need_the_agent_options() {
        let cfg = parse(
            json!({"image": "a", "volumes": ["/etc:/host-etc:ro"], "cap_add": ["NET_ADMIN"]})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let root = std::path::Path::new("/var/lib/edge/allocs/a1");
        let err = |allowed| match check_host_access("web", &cfg, root, allowed) {
            Err(DriverError::Config { field, message }) => (field, message),
            other => panic!("expected a config error, got {other:?}"),
        };
        let (field, message) = err(HostAccess::default());
        assert_eq!(field, "config.volumes[0]");
        assert!(
            message.contains("task web mounts host path /etc"),
            "{message}"
        );
        assert!(
            message.contains("--containerd-allow-host-volumes"),
            "{message}"
        );
        let (field, message) = err(HostAccess {
            host_volumes: true,
            cap_add: false,
        });
        assert_eq!(field, "config.cap_add");
        assert!(message.contains("--containerd-allow-cap-add"), "{message}");
        check_host_access(
            "web",
            &cfg,
            root,
            HostAccess {
                host_volumes: true,
                cap_add: true,
            },
        )
        .unwrap();
        // The allocation's own directory needs no option; climbing out does.
        let inside = parse(
            json!({"image": "a", "volumes": ["/var/lib/edge/allocs/a1/alloc/data:/data"]})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        check_host_access("web", &inside, root, HostAccess::default()).unwrap();
        let escape = parse(
            json!({"image": "a", "volumes": ["/var/lib/edge/allocs/a1/../../../../etc:/x"]})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert!(check_host_access("web", &escape, root, HostAccess::default()).is_err());
    }
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
        assert_eq!(c.network_mode, NetworkMode::Group);
    }

    #[test]
    fn submit_check_leaves_interpolated_values_to_the_agent() {
        check_config(&cfg(json!({
            "image": "busybox",
            "work_dir": "${NOMAD_TASK_DIR}",
            "volumes": ["${NOMAD_ALLOC_DIR}/data:/data", "/a:/b"],
            "cap_add": ["${CAP}"],
        })))
        .unwrap();
        let field = |v| match check_config(&cfg(v)) {
            Err(DriverError::Config { field, message }) => (field, message),
            other => panic!("expected a config error, got {other:?}"),
        };
        let (f, m) = field(json!({"image": "a", "volume": ["/a:/b"]}));
        assert_eq!(f, "config.volume");
        assert!(m.contains("unknown field `volume`"), "{m}");
        assert_eq!(
            field(json!({"image": "a", "volumes": ["${X}:/x", "rel:/x"]})).0,
            "config.volumes[1]",
        );
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
