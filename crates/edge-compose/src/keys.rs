//! Every Compose key edge knows and what it does with it: taken, taken in
//! part (and how), warned about, or refused with what to do instead. The
//! README's table of Compose keys is made from this one table.

use serde_yaml::Value;

use crate::error::{ComposeError, Warning};
use crate::load::{Project, child};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Top,
    Service,
    Deploy,
    Network,
    Volume,
    Config,
    Secret,
}

impl Scope {
    pub fn title(self) -> &'static str {
        match self {
            Scope::Top => "top level",
            Scope::Service => "`services.*`",
            Scope::Deploy => "`services.*.deploy`",
            Scope::Network => "`networks.*`",
            Scope::Volume => "`volumes.*`",
            Scope::Config => "`configs.*`",
            Scope::Secret => "`secrets.*`",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Taken as Compose means it.
    Yes,
    /// Taken; the note says which forms and how.
    Partly,
    /// Taken with a warning (local-development keys a cluster has no use for).
    Warn,
    /// An error; the note says what to do instead.
    No,
}

#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub scope: Scope,
    pub name: &'static str,
    pub support: Support,
    pub note: &'static str,
}

const fn k(scope: Scope, name: &'static str, support: Support, note: &'static str) -> Key {
    Key {
        scope,
        name,
        support,
        note,
    }
}

use Scope::{Config, Deploy, Network, Secret, Service, Top, Volume};
use Support::{No, Partly, Warn, Yes};

const NOT_YET: &str = "not supported yet";

pub const KEYS: &[Key] = &[
    k(Top, "version", Yes, "ignored, as Compose ignores it"),
    k(
        Top,
        "name",
        Yes,
        "the project name: the edge namespace and job id",
    ),
    k(Top, "services", Yes, "one group per service"),
    k(Top, "networks", Yes, "named networks of the job"),
    k(Top, "volumes", Yes, "local volumes"),
    k(Top, "configs", Yes, "edge configs"),
    k(Top, "secrets", Yes, "edge secrets"),
    k(
        Top,
        "include",
        No,
        "not supported yet: list the files with -f",
    ),
    k(Service, "image", Yes, "containerd task"),
    k(
        Service,
        "command",
        Yes,
        "the string form split as a shell does",
    ),
    k(Service, "entrypoint", Yes, ""),
    k(
        Service,
        "environment",
        Yes,
        "a variable without a value takes the shell's",
    ),
    k(
        Service,
        "env_file",
        Yes,
        "read at `up` (`path`, `required`)",
    ),
    k(Service, "working_dir", Yes, ""),
    k(Service, "user", Yes, ""),
    k(Service, "read_only", Yes, ""),
    k(Service, "stop_grace_period", Yes, "the task's kill_timeout"),
    k(Service, "stop_signal", Yes, "the task's kill_signal"),
    k(Service, "labels", Yes, "the task's meta"),
    k(Service, "hostname", Yes, ""),
    k(
        Service,
        "ports",
        Yes,
        "TCP and UDP: published on every node's load balancer (ingress, the default; UDP keeps each client to one replica) or as a host port of the node running the replica (`mode: host`); other protocols are refused",
    ),
    k(
        Service,
        "expose",
        Yes,
        "members of a network reach every port of each other",
    ),
    k(
        Service,
        "networks",
        Partly,
        "named networks; `aliases` become more DNS names; `ipv4_address`, `ipv6_address`, `priority` are refused",
    ),
    k(
        Service,
        "volumes",
        Partly,
        "named volumes → local volumes (per replica, kept on its node); bind mounts → host paths on the node (the agent must allow them); `tmpfs` and `npipe` are refused",
    ),
    k(
        Service,
        "configs",
        Partly,
        "on their targets (default /configs/NAME), read-only; `uid` and `gid` are refused",
    ),
    k(
        Service,
        "secrets",
        Partly,
        "on their targets (default /run/secrets/NAME), read-only; `uid` and `gid` are refused",
    ),
    k(
        Service,
        "healthcheck",
        Yes,
        "a script check run in the container; `retries` restart the task as Swarm does",
    ),
    k(
        Service,
        "depends_on",
        Partly,
        "a service's first replicas are placed once those it names run (`service_started`), pass their checks (`service_healthy`) or ran to completion (`service_completed_successfully`: that service's group gets `batch = true`); `restart: true` is warned about",
    ),
    k(Service, "restart", Yes, "the group's restart policy"),
    k(Service, "deploy", Partly, "see `services.*.deploy`"),
    k(Service, "scale", Yes, "the group's count"),
    k(Service, "mem_limit", Yes, "the task's memory (MB)"),
    k(Service, "cpus", Yes, "the task's cpu, 1000 MHz per CPU"),
    k(Service, "profiles", Yes, ""),
    k(Service, "extends", Yes, ""),
    k(
        Service,
        "cap_add",
        Yes,
        "the agent must allow the capabilities",
    ),
    k(Service, "cap_drop", Yes, ""),
    k(
        Service,
        "container_name",
        Warn,
        "ignored: edge names each replica's container itself",
    ),
    k(
        Service,
        "tty",
        Warn,
        "ignored: no terminal is attached to a service; use `edge alloc exec -t`",
    ),
    k(
        Service,
        "stdin_open",
        Warn,
        "ignored: no terminal is attached to a service; use `edge alloc exec -i`",
    ),
    k(
        Service,
        "logging",
        Warn,
        "ignored: edge keeps each task's logs (`edge compose logs`)",
    ),
    k(
        Service,
        "pull_policy",
        Warn,
        "ignored: edge pulls an image a node does not have",
    ),
    k(
        Service,
        "build",
        No,
        "edge does not build images: build it, then `edge image import` it or push it to a registry, and name it in `image`",
    ),
    k(
        Service,
        "privileged",
        No,
        "edge runs no privileged containers: use `cap_add` for what the service needs",
    ),
    k(Service, "devices", No, NOT_YET),
    k(Service, "device_cgroup_rules", No, NOT_YET),
    k(Service, "gpus", No, NOT_YET),
    k(
        Service,
        "network_mode",
        No,
        "each service gets its own network namespace on the project's networks",
    ),
    k(Service, "pid", No, NOT_YET),
    k(Service, "ipc", No, NOT_YET),
    k(Service, "uts", No, NOT_YET),
    k(Service, "userns_mode", No, NOT_YET),
    k(
        Service,
        "links",
        No,
        "services reach each other by name on a shared network: use `networks`",
    ),
    k(Service, "external_links", No, NOT_YET),
    k(Service, "extra_hosts", No, NOT_YET),
    k(
        Service,
        "dns",
        No,
        "the node's DNS answers services; other names are forwarded to the node's upstreams",
    ),
    k(Service, "dns_search", No, NOT_YET),
    k(Service, "dns_opt", No, NOT_YET),
    k(Service, "domainname", No, NOT_YET),
    k(Service, "mac_address", No, NOT_YET),
    k(Service, "sysctls", No, NOT_YET),
    k(Service, "ulimits", No, NOT_YET),
    k(Service, "security_opt", No, NOT_YET),
    k(Service, "shm_size", No, NOT_YET),
    k(Service, "tmpfs", No, NOT_YET),
    k(Service, "init", No, NOT_YET),
    k(Service, "runtime", No, NOT_YET),
    k(Service, "isolation", No, NOT_YET),
    k(
        Service,
        "platform",
        No,
        "a node runs its own platform's images; place by `deploy.placement.constraints` on `node.platform.os`",
    ),
    k(Service, "storage_opt", No, NOT_YET),
    k(Service, "group_add", No, NOT_YET),
    k(Service, "credential_spec", No, NOT_YET),
    k(Service, "cgroup", No, NOT_YET),
    k(Service, "cgroup_parent", No, NOT_YET),
    k(Service, "cpu_count", No, "use `cpus`"),
    k(Service, "cpu_percent", No, "use `cpus`"),
    k(Service, "cpu_shares", No, "use `cpus`"),
    k(Service, "cpu_period", No, "use `cpus`"),
    k(Service, "cpu_quota", No, "use `cpus`"),
    k(Service, "cpu_rt_runtime", No, NOT_YET),
    k(Service, "cpu_rt_period", No, NOT_YET),
    k(Service, "cpuset", No, NOT_YET),
    k(
        Service,
        "mem_reservation",
        No,
        "use `mem_limit` (edge reserves what it limits)",
    ),
    k(Service, "mem_swappiness", No, NOT_YET),
    k(Service, "memswap_limit", No, NOT_YET),
    k(Service, "oom_kill_disable", No, NOT_YET),
    k(Service, "oom_score_adj", No, NOT_YET),
    k(Service, "pids_limit", No, NOT_YET),
    k(Service, "blkio_config", No, NOT_YET),
    k(Service, "volumes_from", No, "share a named volume instead"),
    k(Service, "annotations", No, NOT_YET),
    k(Service, "attach", No, NOT_YET),
    k(
        Service,
        "develop",
        No,
        "edge runs images, it does not watch sources",
    ),
    k(Service, "post_start", No, NOT_YET),
    k(Service, "pre_stop", No, NOT_YET),
    k(Service, "label_file", No, NOT_YET),
    k(
        Service,
        "models",
        No,
        "serve a model with edge's `model` job block",
    ),
    k(Service, "provider", No, NOT_YET),
    k(
        Service,
        "use_api_socket",
        No,
        "edge gives containers no engine socket",
    ),
    k(
        Deploy,
        "mode",
        Partly,
        "`replicated`; `global` → the group runs on every node (`system = true`); `replicated-job` and `global-job` are refused",
    ),
    k(Deploy, "replicas", Yes, "the group's count"),
    k(
        Deploy,
        "resources",
        Partly,
        "`limits` (else `reservations`) `cpus` and `memory`; `pids` and `devices` are refused",
    ),
    k(
        Deploy,
        "placement",
        Partly,
        "`constraints` on `node.hostname`, `node.id`, `node.labels.*`, `node.platform.os`, `node.platform.arch` with `==`/`!=`; `preferences` `spread` → spread; `max_replicas_per_node` is refused",
    ),
    k(
        Deploy,
        "update_config",
        Partly,
        "`parallelism` → max_parallel; `delay` and `monitor` → min_healthy_time (the longer); `failure_action` `rollback` → auto_revert, `pause`; `order: start-first` (edge's way; `stop-first` is warned about); `continue` and `max_failure_ratio` are refused",
    ),
    k(
        Deploy,
        "rollback_config",
        Partly,
        "the pace of `failure_action: rollback` (update `rollback` rules): `parallelism`, `delay`/`monitor`, `order` as in `update_config`; `failure_action: pause`",
    ),
    k(
        Deploy,
        "restart_policy",
        Yes,
        "`condition`, `delay`, `max_attempts`, `window`",
    ),
    k(Deploy, "labels", Yes, "the group's meta"),
    k(
        Deploy,
        "endpoint_mode",
        Warn,
        "ignored: a service name answers with the load balancer (`vip`), `tasks.NAME` with the replicas (`dnsrr`)",
    ),
    k(
        Network,
        "driver",
        Partly,
        "`bridge` and `overlay` (both are edge's named networks, spanning nodes)",
    ),
    k(Network, "name", No, NOT_YET),
    k(
        Network,
        "external",
        No,
        "not supported yet: networks belong to the project's job",
    ),
    k(
        Network,
        "attachable",
        Warn,
        "ignored: only the project's services join its networks",
    ),
    k(Network, "internal", No, NOT_YET),
    k(Network, "driver_opts", No, NOT_YET),
    k(
        Network,
        "ipam",
        No,
        "not supported yet: the server hands out each network's subnet",
    ),
    k(Network, "enable_ipv4", No, NOT_YET),
    k(Network, "enable_ipv6", No, NOT_YET),
    k(Network, "labels", Warn, "ignored: networks carry no labels"),
    k(Volume, "driver", Partly, "`local` only"),
    k(Volume, "driver_opts", No, NOT_YET),
    k(
        Volume,
        "external",
        No,
        "not supported yet: volumes belong to the project's job",
    ),
    k(Volume, "name", No, NOT_YET),
    k(Volume, "labels", Warn, "ignored: volumes carry no labels"),
    k(
        Config,
        "file",
        Yes,
        "read at `up` into the config `PROJECT-NAME`",
    ),
    k(Config, "content", Yes, ""),
    k(Config, "environment", Yes, "the variable's value at `up`"),
    k(Config, "external", Yes, "the edge config must exist"),
    k(Config, "name", Yes, "the edge config's name"),
    k(Config, "template_driver", No, NOT_YET),
    k(Config, "labels", Warn, "ignored: configs carry no labels"),
    k(
        Secret,
        "file",
        Yes,
        "read at `up` into the secret `PROJECT-NAME`",
    ),
    k(Secret, "environment", Yes, "the variable's value at `up`"),
    k(Secret, "external", Yes, "the edge secret must exist"),
    k(Secret, "name", Yes, "the edge secret's name"),
    k(Secret, "driver", No, NOT_YET),
    k(Secret, "driver_opts", No, NOT_YET),
    k(Secret, "template_driver", No, NOT_YET),
    k(Secret, "labels", Warn, "ignored: secrets carry no labels"),
];

fn lookup(scope: Scope, name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.scope == scope && k.name == name)
}

/// Refuses unknown and unsupported keys, each naming its service, key and
/// line; returns the warnings of the keys edge ignores.
pub fn check(value: &Value, project: &Project) -> Result<Vec<Warning>, ComposeError> {
    let mut warnings = Vec::new();
    let mut visit = |scope: Scope, path: &str, map: &Value| -> Result<(), ComposeError> {
        let Some(m) = map.as_mapping() else {
            return Ok(());
        };
        for key in m.keys() {
            let Some(name) = key.as_str() else {
                continue;
            };
            if name.starts_with("x-") {
                continue;
            }
            let at = child(path, name);
            match lookup(scope, name) {
                None => return Err(project.error(&at, unknown(scope, name))),
                Some(k) if k.support == No => {
                    return Err(project.error(&at, format!("`{name}`: {}", k.note)));
                }
                Some(k) if k.support == Warn => warnings.push(Warning {
                    at: project.locate(&at),
                    message: format!("`{name}` {}", k.note),
                }),
                Some(_) => {}
            }
        }
        Ok(())
    };
    visit(Scope::Top, "", value)?;
    for (top, scope) in [
        ("services", Scope::Service),
        ("networks", Scope::Network),
        ("volumes", Scope::Volume),
        ("configs", Scope::Config),
        ("secrets", Scope::Secret),
    ] {
        let Some(items) = value.get(top).and_then(Value::as_mapping) else {
            continue;
        };
        for (name, item) in items {
            let Some(name) = name.as_str() else {
                continue;
            };
            let path = format!("{top}.{name}");
            visit(scope, &path, item)?;
            if scope == Scope::Service
                && let Some(d) = item.get("deploy")
            {
                visit(Scope::Deploy, &format!("{path}.deploy"), d)?;
            }
        }
    }
    Ok(warnings)
}

fn unknown(scope: Scope, name: &str) -> String {
    let near = KEYS
        .iter()
        .filter(|k| k.scope == scope)
        .map(|k| (strsim::jaro_winkler(k.name, name), k.name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match near {
        Some((_, known)) => format!(
            "unknown key `{name}` (did you mean `{known}`?); extension keys start with `x-`"
        ),
        None => format!("unknown key `{name}`; extension keys start with `x-`"),
    }
}

/// The README's table of Compose keys, one section per scope.
pub fn markdown() -> String {
    let mut out = String::new();
    for scope in [Top, Service, Deploy, Network, Volume, Config, Secret] {
        out.push_str(&format!(
            "\n| {} | edge | how |\n|---|---|---|\n",
            scope.title()
        ));
        for key in KEYS.iter().filter(|k| k.scope == scope) {
            let support = match key.support {
                Yes => "yes",
                Partly => "partly",
                Warn => "ignored, with a warning",
                No => "refused",
            };
            out.push_str(&format!("| `{}` | {support} | {} |\n", key.name, key.note));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for k in KEYS {
            assert!(
                seen.insert((k.scope.title(), k.name)),
                "{} {}",
                k.scope.title(),
                k.name
            );
            assert!(
                k.support == Yes || !k.note.is_empty(),
                "{} needs a note",
                k.name
            );
        }
    }

    /// The README prints the table between its markers; `EDGE_BLESS=1`
    /// writes it there.
    #[test]
    fn the_readme_prints_the_table() {
        let table = markdown();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let (start, end) = ("<!-- compose-table -->\n", "<!-- /compose-table -->");
        let from = readme
            .find(start)
            .expect("README has the table's start marker")
            + start.len();
        let to = readme.find(end).expect("README has the table's end marker");
        if readme[from..to] == table {
            return;
        }
        if std::env::var_os("EDGE_BLESS").is_some() {
            let updated = format!("{}{table}{}", &readme[..from], &readme[to..]);
            std::fs::write(path, updated).expect("write README.md");
            return;
        }
        panic!("README.md's Compose table is stale; run with EDGE_BLESS=1 to rewrite it");
    }
}
