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

const AFFINITY: Treatment =
    Refuse("affinities are not built yet: a `constraint` is the hard form of the same rule");
const SPREAD: Treatment = Refuse(
    "spread is not built yet: copies of a group already avoid sharing a node when another fits",
);
const SCALING: Treatment =
    Refuse("scaling policies are not built yet: `edge job scale JOB GROUP COUNT` sets a count");
const VAULT: Treatment =
    Refuse("there is no Vault integration: secrets are not built yet; use `env` for now");
const DISCONNECT: Treatment = Refuse(
    "edge always follows Nomad's default disconnect behaviour (a lost node's copies are replaced, and the old ones stopped when it returns)",
);

/// `(block, key, treatment)`: `block` is the kind of block the key is
/// written in (`job`, `group`, `task`, `service`, `constraint`, ...).
pub(crate) const TABLE: &[(&str, &str, Treatment)] = &[
    ("job", "affinity", AFFINITY),
    ("job", "spread", SPREAD),
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
    (
        "job",
        "reschedule",
        Refuse("`reschedule` is read per group in edge: move the block into each group"),
    ),
    (
        "job",
        "migrate",
        Refuse("`migrate` is read per group in edge: move the block into each group"),
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
    ("group", "affinity", AFFINITY),
    ("group", "spread", SPREAD),
    ("group", "scaling", SCALING),
    ("group", "vault", VAULT),
    (
        "group",
        "ephemeral_disk",
        Refuse(
            "ephemeral_disk (sticky or migrated data) is not built yet: each allocation starts with an empty directory",
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
    ("task", "affinity", AFFINITY),
    ("task", "scaling", SCALING),
    ("task", "vault", VAULT),
    (
        "task",
        "artifact",
        Refuse("artifacts are not fetched yet: put the files in the image, or on the node"),
    ),
    (
        "task",
        "restart",
        Refuse("`restart` is read per group in edge: move the block into the group"),
    ),
    (
        "task",
        "kill_signal",
        Refuse(
            "tasks are stopped with SIGTERM, then SIGKILL after `kill_timeout`; another signal is not built yet",
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
        "user",
        Refuse(
            "edge reads the user from the driver's config: `config { user = \"...\" }` (exec and containerd)",
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
        "service",
        "connect",
        Refuse(
            "Consul Connect is not supported: edge's DNS names and load balancer connect services",
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
        let mut table = String::from(
            "| key | in block | edge | why, and what to use instead |\n|---|---|---|---|\n",
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
