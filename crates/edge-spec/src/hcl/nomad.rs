//! Nomad jobspec keys edge does not take, each with what happens to it. A
//! key that would change what runs, where, when or how it rolls out is
//! refused with the nearest edge feature: dropping it would run something
//! other than what the file says. A key with no meaning here is accepted
//! with a warning saying why. Keys edge honours are not listed: the serde
//! types decode them. `README.md` prints this table.

/// What edge does with a Nomad key it does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Treatment {
    /// An error; the text says what is missing and what to use instead.
    Refuse(&'static str),
    /// A warning; the text says why the key means nothing here.
    Ignore(&'static str),
}

use Treatment::{Ignore, Refuse};

const SCALING: Treatment = Refuse(
    "a task's `scaling` is Nomad Enterprise's dynamic application sizing, which edge does not have; a group's `scaling` block scales its count",
);
const VAULT: Treatment =
    Refuse("there is no Vault integration: secrets are not built yet; use `env` for now");
const DISCONNECT: Treatment = Refuse(
    "edge always follows Nomad's default disconnect behaviour (a lost node's copies are replaced, and the old ones stopped when it returns)",
);

const CSI: Treatment = Refuse(
    "CSI volumes are not supported: a `volume` is a host volume the node offers (`edge agent --host-volume`)",
);
const CHECK_DETAIL: Treatment = Refuse(
    "http checks send a plain GET and pass on any 2xx or 3xx; this setting is not built yet",
);
const CONSUL_HEALTH: Treatment = Refuse(
    "edge judges a check passing or failing at once and every check counts toward a deployment's health; Consul's thresholds and on_update are not built",
);
const TEMPLATE_DETAIL: Treatment = Refuse(
    "edge templates are Jinja (minijinja) rendered at start and on change of their data, as files of the task's user; this setting is not built",
);

/// `(block, key, treatment)`: `block` is the kind of block the key is
/// written in (`job`, `group`, `task`, `service`, `constraint`, ...).
pub(crate) const TABLE: &[(&str, &str, Treatment)] = &[
    (
        "job",
        "multiregion",
        Refuse("edge has one region: run the job in each cluster"),
    ),
    ("job", "vault", VAULT),
    (
        "job",
        "node_pool",
        Refuse(
            "node pools are not built yet: a `datacenters` list or a `constraint` picks the nodes",
        ),
    ),
    ("job", "region", Ignore("edge has one region")),
    (
        "job",
        "all_at_once",
        Ignore("edge places each evaluation's copies in one plan already"),
    ),
    ("job", "ui", Ignore("edge has no UI metadata")),
    ("job", "consul_token", Ignore("edge has no Consul")),
    ("job", "vault_token", Ignore("edge has no Vault")),
    (
        "scaling",
        "policy",
        Refuse(
            "a `policy` block is for the nomad-autoscaler's plugins; edge's server scales by `target_concurrency`, `target_rps` and `idle_timeout` written in the `scaling` block itself",
        ),
    ),
    ("group", "vault", VAULT),
    (
        "ephemeral_disk",
        "size",
        Ignore("edge does not reserve disk: an allocation's directory grows as it needs"),
    ),
    (
        "ephemeral_disk",
        "sticky",
        Refuse(
            "sticky data is not built yet: each allocation starts with an empty directory; a host volume keeps data on a node",
        ),
    ),
    (
        "ephemeral_disk",
        "migrate",
        Refuse(
            "migrated data is not built yet: each allocation starts with an empty directory; a host volume keeps data on a node",
        ),
    ),
    ("group", "max_client_disconnect", DISCONNECT),
    ("group", "stop_after_client_disconnect", DISCONNECT),
    ("group", "disconnect", DISCONNECT),
    (
        "group",
        "shutdown_delay",
        Refuse("edge reads `shutdown_delay` on each `service`: move it there"),
    ),
    (
        "group",
        "consul",
        Ignore("edge has no Consul: services are in edge's own catalog"),
    ),
    ("task", "scaling", SCALING),
    ("task", "vault", VAULT),
    (
        "task",
        "restart",
        Refuse(
            "edge restarts per group: a task's `restart` is read as its group's only when it is the group's one task and the group has none; move the block into the group",
        ),
    ),
    (
        "task",
        "leader",
        Refuse(
            "leader tasks are not built yet: when one task of a group exits the others keep running",
        ),
    ),
    (
        "task",
        "logs",
        Ignore("logs are rotated by the agent (`--log-max-bytes`, `--log-max-files`)"),
    ),
    ("task", "kind", Ignore("edge has no Consul Connect tasks")),
    (
        "task",
        "identity",
        Ignore("edge has no workload identities yet"),
    ),
    (
        "group",
        "prevent_reschedule_on_lost",
        Refuse("a lost node's copies are always replaced elsewhere (Nomad's default)"),
    ),
    (
        "task",
        "action",
        Ignore("actions are commands run by hand: run them with `edge alloc exec`"),
    ),
    ("task", "consul", Ignore("edge has no Consul")),
    (
        "task",
        "csi_plugin",
        Refuse("CSI plugins are not supported: use host volumes"),
    ),
    (
        "task",
        "schedule",
        Refuse("task schedules are not built: a periodic batch job runs a task on a schedule"),
    ),
    (
        "task",
        "shutdown_delay",
        Refuse("edge reads `shutdown_delay` on each `service`: move it there"),
    ),
    (
        "network",
        "dns",
        Refuse(
            "a bridge allocation resolves through edge's own DNS at its gateway; other servers are not built yet",
        ),
    ),
    (
        "network",
        "mbits",
        Ignore("bandwidth is not reserved or limited by edge (Nomad deprecated it too)"),
    ),
    (
        "network",
        "hostname",
        Refuse("set the hostname in the task: `config { hostname = \"...\" }` (containerd)"),
    ),
    (
        "port",
        "ignore_collision",
        Refuse("edge never places two copies on one static port of a node"),
    ),
    (
        "service",
        "canary_tags",
        Ignore("edge tells canaries apart by their deployment, not by tags"),
    ),
    (
        "service",
        "enable_tag_override",
        Ignore("only edge writes its catalog, so there is nothing to override"),
    ),
    (
        "service",
        "address",
        Refuse("a service advertises its allocation's address; another address is not built"),
    ),
    (
        "service",
        "address_mode",
        Refuse(
            "a service advertises the allocation's address: the node's in host mode, the bridge's in bridge mode",
        ),
    ),
    (
        "service",
        "meta",
        Refuse("edge's catalog keeps no service metadata: put what consumers need in `tags`"),
    ),
    (
        "service",
        "canary_meta",
        Refuse("edge's catalog keeps no service metadata: put what consumers need in `tags`"),
    ),
    (
        "service",
        "tagged_addresses",
        Ignore("edge has no Consul: services are in edge's own catalog"),
    ),
    (
        "service",
        "task",
        Ignore("a service belongs to its group: every copy of the group advertises it"),
    ),
    ("service", "on_update", CONSUL_HEALTH),
    (
        "service",
        "identity",
        Ignore("edge has no workload identities yet"),
    ),
    (
        "service",
        "weights",
        Ignore("edge's load balancer sends to every passing copy alike"),
    ),
    ("check", "method", CHECK_DETAIL),
    ("check", "header", CHECK_DETAIL),
    ("check", "body", CHECK_DETAIL),
    ("check", "protocol", CHECK_DETAIL),
    ("check", "tls_skip_verify", CHECK_DETAIL),
    ("check", "tls_server_name", CHECK_DETAIL),
    ("check", "initial_status", CONSUL_HEALTH),
    ("check", "success_before_passing", CONSUL_HEALTH),
    ("check", "failures_before_critical", CONSUL_HEALTH),
    ("check", "failures_before_warning", CONSUL_HEALTH),
    ("check", "on_update", CONSUL_HEALTH),
    (
        "check",
        "expose",
        Refuse("Consul Connect is not supported: a check reaches the port directly"),
    ),
    (
        "check",
        "address_mode",
        Refuse("a check dials the address the service advertises"),
    ),
    ("check", "notes", Ignore("edge keeps no notes on checks")),
    (
        "check_restart",
        "ignore_warnings",
        Refuse("a check is passing or failing in edge; there is no warning state to ignore"),
    ),
    (
        "resources",
        "cores",
        Refuse("reserved cores are not built: `cpu` (MHz) sets the task's CPU shares"),
    ),
    (
        "resources",
        "memory_max",
        Refuse("memory oversubscription is not built: `memory` is the task's hard limit"),
    ),
    (
        "resources",
        "device",
        Refuse(
            "devices (GPUs, ...) are not scheduled yet: a `constraint` on node meta picks their nodes",
        ),
    ),
    (
        "resources",
        "numa",
        Refuse("NUMA-aware placement is not built"),
    ),
    (
        "resources",
        "secrets",
        Ignore("the secrets directory is a tmpfs sized by what is written into it"),
    ),
    (
        "restart",
        "render_templates",
        Refuse("a restart keeps the rendered templates; re-rendering on restart is not built"),
    ),
    (
        "reschedule",
        "delay_function",
        Refuse(
            "rescheduling waits `delay` each time (Nomad's \"constant\"); other functions are not built",
        ),
    ),
    (
        "reschedule",
        "max_delay",
        Refuse(
            "rescheduling waits `delay` each time (Nomad's \"constant\"), so there is no maximum to set",
        ),
    ),
    ("template", "change_script", TEMPLATE_DETAIL),
    ("template", "uid", TEMPLATE_DETAIL),
    ("template", "gid", TEMPLATE_DETAIL),
    ("template", "left_delimiter", TEMPLATE_DETAIL),
    ("template", "right_delimiter", TEMPLATE_DETAIL),
    ("template", "error_on_missing_key", TEMPLATE_DETAIL),
    ("template", "once", TEMPLATE_DETAIL),
    (
        "template",
        "splay",
        Ignore("a changed template restarts or signals its task at once"),
    ),
    (
        "template",
        "wait",
        Ignore(
            "edge re-renders a template when its config, secret or variable changes, without a quiet period",
        ),
    ),
    ("volume", "access_mode", CSI),
    ("volume", "attachment_mode", CSI),
    ("volume", "mount_options", CSI),
    ("volume", "per_alloc", CSI),
    ("volume", "sticky", CSI),
    (
        "volume_mount",
        "propagation_mode",
        Refuse("mounts are private (no propagation); other modes are not built"),
    ),
    (
        "volume_mount",
        "selinux_label",
        Refuse("SELinux labels are not applied by edge"),
    ),
    (
        "artifact",
        "headers",
        Refuse("artifacts are fetched with a plain GET; request headers are not built yet"),
    ),
    (
        "artifact",
        "chown",
        Refuse(
            "artifact files belong to the agent's user and are readable by the task; chown is not built yet",
        ),
    ),
    (
        "service",
        "connect",
        Refuse(
            "Consul Connect is not supported: edge's DNS names and load balancer connect services",
        ),
    ),
    (
        "port",
        "host_network",
        Refuse(
            "host networks are not built yet: a port listens on every address of the node; a `constraint` picks nodes with the right network",
        ),
    ),
    (
        "service",
        "provider",
        Ignore("services always go to edge's own catalog"),
    ),
];

/// What edge does with `key` written in a block of kind `block`, if it is
/// a Nomad key edge does not decode.
pub(crate) fn treatment(block: &str, key: &str) -> Option<Treatment> {
    TABLE
        .iter()
        .find(|(b, k, _)| *b == block && *k == key)
        .map(|(_, _, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;
    use std::collections::{BTreeMap, BTreeSet};

    /// Nomad's jobspec as its documentation lists it, block by block. The
    /// keys inside a block edge refuses or ignores as a whole are left out.
    const JOBSPEC: &[(&str, &[&str])] = &[
        (
            "job",
            &[
                "affinity",
                "all_at_once",
                "constraint",
                "consul_token",
                "datacenters",
                "group",
                "meta",
                "migrate",
                "multiregion",
                "namespace",
                "node_pool",
                "parameterized",
                "periodic",
                "priority",
                "region",
                "reschedule",
                "spread",
                "type",
                "ui",
                "update",
                "vault",
                "vault_token",
            ],
        ),
        (
            "group",
            &[
                "affinity",
                "constraint",
                "consul",
                "count",
                "disconnect",
                "ephemeral_disk",
                "max_client_disconnect",
                "meta",
                "migrate",
                "network",
                "prevent_reschedule_on_lost",
                "reschedule",
                "restart",
                "scaling",
                "service",
                "shutdown_delay",
                "spread",
                "stop_after_client_disconnect",
                "task",
                "update",
                "vault",
                "volume",
            ],
        ),
        (
            "task",
            &[
                "action",
                "affinity",
                "artifact",
                "config",
                "constraint",
                "consul",
                "csi_plugin",
                "dispatch_payload",
                "driver",
                "env",
                "identity",
                "kill_signal",
                "kill_timeout",
                "kind",
                "leader",
                "lifecycle",
                "logs",
                "meta",
                "resources",
                "restart",
                "scaling",
                "schedule",
                "service",
                "shutdown_delay",
                "template",
                "user",
                "vault",
                "volume_mount",
            ],
        ),
        ("network", &["mode", "port", "dns", "hostname", "mbits"]),
        (
            "port",
            &["static", "to", "host_network", "ignore_collision"],
        ),
        (
            "service",
            &[
                "name",
                "port",
                "tags",
                "canary_tags",
                "enable_tag_override",
                "address",
                "address_mode",
                "check",
                "check_restart",
                "connect",
                "meta",
                "canary_meta",
                "tagged_addresses",
                "task",
                "on_update",
                "provider",
                "identity",
                "weights",
            ],
        ),
        (
            "check",
            &[
                "name",
                "type",
                "port",
                "path",
                "interval",
                "timeout",
                "method",
                "header",
                "body",
                "protocol",
                "tls_skip_verify",
                "tls_server_name",
                "initial_status",
                "success_before_passing",
                "failures_before_critical",
                "failures_before_warning",
                "expose",
                "command",
                "args",
                "task",
                "grpc_service",
                "grpc_use_tls",
                "address_mode",
                "check_restart",
                "on_update",
                "notes",
            ],
        ),
        ("check_restart", &["limit", "grace", "ignore_warnings"]),
        (
            "resources",
            &[
                "cpu",
                "cores",
                "memory",
                "memory_max",
                "device",
                "network",
                "numa",
                "secrets",
            ],
        ),
        (
            "restart",
            &["attempts", "delay", "interval", "mode", "render_templates"],
        ),
        (
            "reschedule",
            &[
                "attempts",
                "interval",
                "delay",
                "delay_function",
                "max_delay",
                "unlimited",
            ],
        ),
        (
            "update",
            &[
                "max_parallel",
                "health_check",
                "min_healthy_time",
                "healthy_deadline",
                "progress_deadline",
                "auto_revert",
                "auto_promote",
                "canary",
                "stagger",
            ],
        ),
        (
            "migrate",
            &[
                "max_parallel",
                "health_check",
                "min_healthy_time",
                "healthy_deadline",
            ],
        ),
        ("lifecycle", &["hook", "sidecar"]),
        (
            "template",
            &[
                "data",
                "source",
                "destination",
                "change_mode",
                "change_signal",
                "change_script",
                "env",
                "perms",
                "uid",
                "gid",
                "left_delimiter",
                "right_delimiter",
                "splay",
                "wait",
                "error_on_missing_key",
                "once",
            ],
        ),
        (
            "volume",
            &[
                "type",
                "source",
                "read_only",
                "access_mode",
                "attachment_mode",
                "mount_options",
                "per_alloc",
                "sticky",
            ],
        ),
        (
            "volume_mount",
            &[
                "volume",
                "destination",
                "read_only",
                "propagation_mode",
                "selinux_label",
            ],
        ),
        ("constraint", &["attribute", "operator", "value"]),
        ("affinity", &["attribute", "operator", "value", "weight"]),
        ("spread", &["attribute", "weight", "target"]),
        ("target", &["percent"]),
        (
            "periodic",
            &["cron", "crons", "prohibit_overlap", "time_zone", "enabled"],
        ),
        (
            "parameterized",
            &["payload", "meta_required", "meta_optional"],
        ),
        ("dispatch_payload", &["file"]),
        ("ephemeral_disk", &["size", "sticky", "migrate"]),
        ("scaling", &["enabled", "min", "max", "policy"]),
        (
            "artifact",
            &[
                "source",
                "destination",
                "mode",
                "options",
                "headers",
                "chown",
            ],
        ),
    ];

    /// The HCL keys the serde types decode, by block: the properties of
    /// each block's schema, a repeated block under its own name (`LISTS`).
    fn decoded() -> BTreeMap<String, BTreeSet<String>> {
        let schema = serde_json::to_value(schemars::schema_for!(crate::job::Job)).expect("schema");
        let defs = schema["$defs"].clone();
        let resolve = |v: &Json| -> Json {
            let mut v = v.clone();
            if let Some(any) = v.get("anyOf").and_then(Json::as_array) {
                v = any
                    .iter()
                    .find(|s| s.get("$ref").is_some())
                    .cloned()
                    .unwrap_or(v);
            }
            if let Some(items) = v.get("items") {
                v = items.clone();
            }
            match v.get("$ref").and_then(Json::as_str) {
                Some(r) => defs[r.trim_start_matches("#/$defs/")].clone(),
                None => v,
            }
        };
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut todo = vec![("job".to_string(), schema.clone())];
        let mut seen = BTreeSet::new();
        while let Some((kind, s)) = todo.pop() {
            let Some(props) = s.get("properties").and_then(Json::as_object) else {
                continue;
            };
            for (field, sub) in props {
                let block = super::super::LISTS
                    .iter()
                    .find(|l| l.0 == kind && l.2 == field)
                    .map_or(field.as_str(), |l| l.1);
                out.entry(kind.clone())
                    .or_default()
                    .insert(block.to_string());
                let sub = resolve(sub);
                if sub.get("properties").is_some() && seen.insert((kind.clone(), block.to_string()))
                {
                    todo.push((block.to_string(), sub));
                }
            }
        }
        out
    }

    /// The rule: each key of Nomad's jobspec is honoured, or in
    /// `TABLE` as refused or ignored, never both and never neither (then a
    /// user would get "unknown attribute" for a key Nomad documents).
    #[test]
    fn every_nomad_key_is_in_exactly_one_list() {
        let decoded = decoded();
        let mut problems = Vec::new();
        for (block, keys) in JOBSPEC {
            for key in *keys {
                // A task's services are read as the group's, a service's
                // `check_restart` as each of its checks', and a task's old
                // `resources { network }` as the group's network; the keys of
                // `ephemeral_disk` are in the table one by one, and the job's
                // `migrate` and `reschedule` are read into each group's, a
                // task's `user` as its `config.user`.
                let hoisted = [
                    ("task", "service"),
                    ("service", "check_restart"),
                    ("resources", "network"),
                    ("group", "ephemeral_disk"),
                    ("job", "migrate"),
                    ("job", "reschedule"),
                    ("task", "user"),
                ]
                .contains(&(*block, *key));
                let honoured = hoisted || decoded.get(*block).is_some_and(|d| d.contains(*key));
                match (honoured, treatment(block, key)) {
                    (true, Some(_)) => {
                        problems.push(format!("{block}.{key} is decoded and in TABLE"))
                    }
                    (false, None) => problems.push(format!("{block}.{key} is in no list")),
                    _ => {}
                }
            }
        }
        for (block, key, _) in TABLE {
            if !JOBSPEC
                .iter()
                .any(|(b, keys)| b == block && keys.contains(key))
            {
                problems.push(format!("{block}.{key} is in TABLE but not in JOBSPEC"));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    /// The issue that brought the table: a block that changes scheduling,
    /// placement, rollout or what runs is never only a warning.
    #[test]
    fn behaviour_changing_blocks_are_never_warnings() {
        for key in [
            "periodic",
            "parameterized",
            "affinity",
            "spread",
            "artifact",
            "constraint",
            "meta",
            "restart",
            "reschedule",
            "migrate",
            "scaling",
        ] {
            for (b, k, t) in TABLE {
                if *k == key {
                    assert!(matches!(t, Refuse(_)), "{b}.{k} is only a warning");
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (b, k, _) in TABLE {
            assert!(seen.insert((b, k)), "{b}.{k} is listed twice");
        }
    }

    /// The README prints the table between its markers; `EDGE_BLESS=1`
    /// writes it there.
    #[test]
    fn the_readme_prints_the_table() {
        let decoded = decoded();
        let mut table = String::from("Honoured, by block:\n\n");
        for (block, keys) in JOBSPEC {
            let honoured: Vec<String> = keys
                .iter()
                .filter(|k| treatment(block, k).is_none())
                .map(|k| format!("`{k}`"))
                .collect();
            if !honoured.is_empty() && decoded.contains_key(*block) {
                table.push_str(&format!("- `{block}`: {}\n", honoured.join(", ")));
            }
        }
        table.push_str(
            "\nRefused or warned about:\n\n| key | in block | edge | why, and what to use instead |\n|---|---|---|---|\n",
        );
        for (b, k, t) in TABLE {
            let (what, why) = match t {
                Refuse(why) => ("refused", why),
                Ignore(why) => ("warning", why),
            };
            table.push_str(&format!("| `{k}` | `{b}` | {what} | {why} |\n"));
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let (start, end) = ("<!-- nomad-table -->\n", "<!-- /nomad-table -->");
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
        panic!("README.md's Nomad table is stale; run with EDGE_BLESS=1 to rewrite it");
    }
}
