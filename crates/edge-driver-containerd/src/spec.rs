//! The OCI runtime spec of a task's container, built from the image config
//! and the task: process (command, env, user, working dir), mounts, cgroup
//! limits, capabilities and namespaces.

use crate::config::{NetworkMode, TaskImageConfig};
use crate::oci::ContainerConfig;
use edge_driver::{DriverError, TaskConfig};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The capabilities Docker grants a container by default.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const ALL_CAPS: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `net_admin`, `NET_ADMIN` or `CAP_NET_ADMIN` → `CAP_NET_ADMIN`, if known.
pub(crate) fn capability(name: &str) -> Option<&'static str> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    ALL_CAPS.iter().find(|c| **c == full).copied()
}

/// What the spec is made from.
pub(crate) struct SpecInput<'a> {
    pub task: &'a TaskConfig,
    pub config: &'a TaskImageConfig,
    pub image: &'a ContainerConfig,
    pub cgroups_path: String,
    pub hostname: String,
    /// Whether the kernel accounts swap, so memory+swap can be capped too.
    pub limit_swap: bool,
}

/// The final argv: an `entrypoint` override drops the image's Cmd (as
/// Docker does); `command` + `args` replace the Cmd; `args` alone replace it too.
pub(crate) fn argv(
    config: &TaskImageConfig,
    image: &ContainerConfig,
) -> Result<Vec<String>, DriverError> {
    let (entrypoint, image_cmd) = match &config.entrypoint {
        Some(ep) => (ep.clone(), Vec::new()),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            image.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = match &config.command {
        Some(c) => std::iter::once(c.clone())
            .chain(config.args.iter().cloned())
            .collect(),
        None if !config.args.is_empty() => config.args.clone(),
        None => image_cmd,
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(DriverError::config(
            "config.command",
            format!(
                "image {} has no entrypoint or command: set one",
                config.image
            ),
        ));
    }
    Ok(argv)
}

/// `uid[:gid]` or `root`; an empty user is root. Names other than root
/// would need the image's /etc/passwd and are refused with a clear error.
pub(crate) fn user(
    config: &TaskImageConfig,
    image: &ContainerConfig,
) -> Result<(u32, u32), DriverError> {
    let (field, spec) = match (&config.user, &image.user) {
        (Some(u), _) => ("config.user", u.as_str()),
        (None, Some(u)) => ("image config User", u.as_str()),
        (None, None) => return Ok((0, 0)),
    };
    if spec.is_empty() || spec == "root" {
        return Ok((0, 0));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let num = |s: &str| -> Result<u32, DriverError> {
        if s == "root" {
            return Ok(0);
        }
        s.parse().map_err(|_| {
            DriverError::config(
                field,
                format!("user {spec:?}: only numeric uid[:gid] (or root) is supported"),
            )
        })
    };
    let uid = num(u)?;
    let gid = match g {
        Some(g) => num(g)?,
        None => uid,
    };
    Ok((uid, gid))
}

/// Image env, then the task's (edge's `EDGE_*` included); directories are
/// given as the container sees them.
pub(crate) fn env(task: &TaskConfig, image: &ContainerConfig) -> Vec<String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for kv in image.env.iter().flatten() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if vars.insert(k.to_string(), v.to_string()).is_none() {
            order.push(k.to_string());
        }
    }
    let mut put = |k: &str, v: &str| {
        if vars.insert(k.to_string(), v.to_string()).is_none() {
            order.push(k.to_string());
        }
    };
    if !image.env.iter().flatten().any(|kv| kv.starts_with("PATH=")) {
        put("PATH", DEFAULT_PATH);
    }
    for (k, v) in &task.env {
        put(k, v);
    }
    put("EDGE_ALLOC_DIR", "/alloc");
    put("EDGE_TASK_DIR", "/local");
    order
        .into_iter()
        .map(|k| {
            let v = &vars[&k];
            format!("{k}={v}")
        })
        .collect()
}

fn bind(source: &str, destination: &str, readonly: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    options.push(if readonly { "ro" } else { "rw" });
    json!({"destination": destination, "type": "bind", "source": source, "options": options})
}

/// The resolver configuration a container gets. In its own namespace a
/// loopback resolver (systemd-resolved's 127.0.0.53) is out of reach, so,
/// as Docker does, the upstream list systemd-resolved keeps is used instead.
fn resolv_conf(own_namespace: bool) -> &'static str {
    const HOST: &str = "/etc/resolv.conf";
    const UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";
    if !own_namespace {
        return HOST;
    }
    let loopback_only = std::fs::read_to_string(HOST).is_ok_and(|t| only_loopback_servers(&t));
    if loopback_only && std::path::Path::new(UPSTREAM).exists() {
        UPSTREAM
    } else {
        HOST
    }
}

fn only_loopback_servers(resolv_conf: &str) -> bool {
    let servers: Vec<&str> = resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .collect();
    !servers.is_empty()
        && servers.iter().all(|s| {
            s.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        })
}

pub(crate) fn build(input: &SpecInput<'_>) -> Result<Value, DriverError> {
    let SpecInput {
        task,
        config,
        image,
        ..
    } = input;
    let args = argv(config, image)?;
    let (uid, gid) = user(config, image)?;
    let cwd = config
        .work_dir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());

    let mut caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    for c in config.cap_add.iter().filter_map(|c| capability(c)) {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    let drop: Vec<&str> = config
        .cap_drop
        .iter()
        .filter_map(|c| capability(c))
        .collect();
    caps.retain(|c| !drop.contains(c));

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        bind(&task.alloc_dir.display().to_string(), "/alloc", false),
        bind(
            &task.task_dir.join("local").display().to_string(),
            "/local",
            false,
        ),
    ];
    let resolv = match &task.resolv_conf {
        Some(own) => own.display().to_string(),
        None => resolv_conf(task.netns.is_some()).to_string(),
    };
    for (source, f) in [
        (resolv.as_str(), "/etc/resolv.conf"),
        ("/etc/hosts", "/etc/hosts"),
    ] {
        if std::path::Path::new(source).exists() {
            mounts.push(bind(source, f, true));
        }
    }
    for v in &config.volumes {
        mounts.push(bind(
            &v.host.display().to_string(),
            &v.container,
            v.readonly,
        ));
    }
    // A task's configs and secrets, written by the agent into its dir,
    // where Swarm puts them.
    for (dir, at) in [("configs", "/configs"), ("secrets", "/run/secrets")] {
        let source = task.task_dir.join(dir);
        if source.is_dir() {
            mounts.push(bind(&source.display().to_string(), at, true));
        }
    }
    for m in &task.mounts {
        mounts.push(bind(
            &m.source.display().to_string(),
            &m.destination,
            m.read_only,
        ));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    // Host networking is the absence of a network namespace; in a bridge
    // group the container joins the allocation's, made by the agent.
    let network: Option<Value> = match (config.network_mode, &task.netns) {
        (_, None) => None,
        (NetworkMode::Group, Some(path)) => Some(json!({"type": "network", "path": path})),
        (NetworkMode::Host, Some(_)) => {
            return Err(DriverError::config(
                "config.network_mode",
                "\"host\" cannot be used in a group with `network { mode = \"bridge\" }`: \
                 the group's tasks share the allocation's network namespace",
            ));
        }
    };
    namespaces.extend(network);

    let memory_bytes = u64::from(task.resources.memory) * 1024 * 1024;
    let mut memory = json!({});
    if memory_bytes > 0 {
        memory = json!({"limit": memory_bytes});
        if input.limit_swap {
            memory["swap"] = json!(memory_bytes);
        }
    }
    let shares = u64::from(task.resources.cpu).clamp(2, 262_144);

    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env(task, image),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": config.readonly_rootfs},
        "hostname": input.hostname,
        "mounts": mounts,
        "linux": {
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": memory,
                "cpu": {"shares": shares},
            },
            "cgroupsPath": input.cgroups_path,
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_spec::Resources;
    use std::path::PathBuf;

    fn task() -> TaskConfig {
        TaskConfig {
            mounts: Vec::new(),
            alloc_id: "a1".into(),
            job_id: "j".into(),
            group: "g".into(),
            task: "web".into(),
            config: Default::default(),
            env: BTreeMap::from([
                ("EDGE_PORT_http".to_string(), "8080".to_string()),
                (
                    "EDGE_ALLOC_DIR".to_string(),
                    "/var/lib/edge/a1/alloc".to_string(),
                ),
                ("PATH".to_string(), "/custom".to_string()),
            ]),
            resources: Resources {
                cpu: 500,
                memory: 64,
            },
            ports: vec![],
            alloc_dir: PathBuf::from("/data/a1/alloc"),
            task_dir: PathBuf::from("/data/a1/web"),
            log_dir: PathBuf::from("/data/a1/alloc/logs"),
            log_max_bytes: 1024,
            log_max_files: 2,
            netns: None,
            resolv_conf: None,
        }
    }

    fn image() -> ContainerConfig {
        ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "LANG=C".into()]),
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["serve".into()]),
            working_dir: Some("/app".into()),
            user: Some("1000".into()),
        }
    }

    fn cfg() -> TaskImageConfig {
        TaskImageConfig {
            image: "busybox".into(),
            ..Default::default()
        }
    }

    #[test]
    fn argv_follows_docker_rules() {
        let img = image();
        assert_eq!(argv(&cfg(), &img).unwrap(), ["/entry", "serve"]);
        let c = TaskImageConfig {
            command: Some("run".into()),
            args: vec!["-x".into()],
            ..cfg()
        };
        assert_eq!(argv(&c, &img).unwrap(), ["/entry", "run", "-x"]);
        let c = TaskImageConfig {
            args: vec!["-y".into()],
            ..cfg()
        };
        assert_eq!(argv(&c, &img).unwrap(), ["/entry", "-y"]);
        let c = TaskImageConfig {
            entrypoint: Some(vec!["/bin/sh".into()]),
            ..cfg()
        };
        assert_eq!(argv(&c, &img).unwrap(), ["/bin/sh"]);
        assert!(matches!(
            argv(&cfg(), &ContainerConfig::default()),
            Err(DriverError::Config { .. })
        ));
    }

    #[test]
    fn users_are_numeric_or_root() {
        let img = image();
        assert_eq!(user(&cfg(), &img).unwrap(), (1000, 1000));
        let c = |u: &str| TaskImageConfig {
            user: Some(u.into()),
            ..cfg()
        };
        assert_eq!(user(&c("5:6"), &img).unwrap(), (5, 6));
        assert_eq!(user(&c("root"), &img).unwrap(), (0, 0));
        assert!(matches!(
            user(&c("nginx"), &img),
            Err(DriverError::Config { .. })
        ));
    }

    #[test]
    fn env_layers_task_over_image_with_container_paths() {
        let env = env(&task(), &image());
        assert!(env.contains(&"PATH=/custom".to_string()));
        assert!(env.contains(&"LANG=C".to_string()));
        assert!(env.contains(&"EDGE_PORT_http=8080".to_string()));
        assert!(env.contains(&"EDGE_ALLOC_DIR=/alloc".to_string()));
        assert!(env.contains(&"EDGE_TASK_DIR=/local".to_string()));
    }

    #[test]
    fn spec_has_limits_mounts_and_hardening() {
        let t = TaskConfig {
            mounts: vec![edge_driver::Mount {
                source: "/var/lib/edge/volumes/default/db/g/data-0".into(),
                destination: "/var/lib/db".into(),
                read_only: false,
            }],
            ..task()
        };
        let c = TaskImageConfig {
            readonly_rootfs: true,
            volumes: vec![crate::config::Volume {
                host: "/srv".into(),
                container: "/data".into(),
                readonly: true,
            }],
            cap_add: vec!["net_admin".into()],
            cap_drop: vec!["CHOWN".into()],
            ..cfg()
        };
        let img = image();
        let spec = build(&SpecInput {
            task: &t,
            config: &c,
            image: &img,
            cgroups_path: "/edge/x".into(),
            hostname: "h".into(),
            limit_swap: true,
        })
        .unwrap();
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(spec["linux"]["resources"]["memory"]["swap"], 64 << 20);
        assert_eq!(spec["linux"]["resources"]["cpu"]["shares"], 500);
        assert_eq!(spec["linux"]["cgroupsPath"], "/edge/x");
        assert_eq!(spec["root"]["readonly"], true);
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["process"]["cwd"], "/app");
        let caps = spec["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert!(caps.contains(&json!("CAP_NET_ADMIN")));
        assert!(!caps.contains(&json!("CAP_CHOWN")));
        assert!(!caps.contains(&json!("CAP_SYS_ADMIN")));
        let mounts = spec["mounts"].as_array().unwrap();
        let find = |d: &str| mounts.iter().find(|m| m["destination"] == d).cloned();
        assert_eq!(find("/alloc").unwrap()["source"], "/data/a1/alloc");
        assert_eq!(find("/local").unwrap()["source"], "/data/a1/web/local");
        assert!(
            find("/data").unwrap()["options"]
                .as_array()
                .unwrap()
                .contains(&json!("ro"))
        );
        let vol = find("/var/lib/db").unwrap();
        assert_eq!(vol["source"], "/var/lib/edge/volumes/default/db/g/data-0");
        assert_eq!(vol["options"], json!(["rbind", "rprivate", "rw"]));
        let ns = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(
            !ns.iter().any(|n| n["type"] == "network"),
            "host network by default"
        );
    }

    #[test]
    fn a_bridge_group_puts_the_container_in_the_allocations_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("resolv.conf");
        std::fs::write(&own, "nameserver 172.26.64.1\n").unwrap();
        let t = TaskConfig {
            netns: Some("/run/netns/edge-a1".into()),
            resolv_conf: Some(own.clone()),
            ..task()
        };
        let img = image();
        let input = |c: &TaskImageConfig| {
            build(&SpecInput {
                task: &t,
                config: c,
                image: &img,
                cgroups_path: "/edge/x".into(),
                hostname: "h".into(),
                limit_swap: false,
            })
        };
        let spec = input(&cfg()).unwrap();
        let ns = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(
            ns.contains(&json!({"type": "network", "path": "/run/netns/edge-a1"})),
            "{ns:?}"
        );
        let mounts = spec["mounts"].as_array().unwrap();
        let resolv = mounts
            .iter()
            .find(|m| m["destination"] == "/etc/resolv.conf")
            .unwrap();
        assert_eq!(resolv["source"], own.display().to_string());
        let host = TaskImageConfig {
            network_mode: NetworkMode::Host,
            ..cfg()
        };
        let err = input(&host).unwrap_err().to_string();
        assert!(
            err.contains("config.network_mode") && err.contains("bridge"),
            "{err}"
        );
    }

    #[test]
    fn a_loopback_resolver_is_not_handed_to_a_namespace_that_cannot_reach_it() {
        assert_eq!(resolv_conf(false), "/etc/resolv.conf");
        assert!(only_loopback_servers(
            "nameserver 127.0.0.53\noptions edns0\n"
        ));
        assert!(only_loopback_servers("nameserver ::1\n"));
        assert!(!only_loopback_servers(
            "nameserver 127.0.0.53\nnameserver 10.0.0.2\n"
        ));
        assert!(!only_loopback_servers("# none\n"));
        assert!(!only_loopback_servers("nameserver 192.168.1.1\n"));
    }
}
