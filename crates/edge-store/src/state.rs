//! The in-memory cluster state, the batches that change it, and loading it from disk.

use crate::StoreError;
use edge_sched::NodeUsage;
use edge_spec::acl::{AclPolicy, AclToken};
use edge_spec::objects::{ConfigObject, SecretObject, object_key};
use edge_spec::{
    Allocation, DEFAULT_NAMESPACE, Deployment, EvalStatus, Evaluation, Job, Namespace, Node,
    OverlayNetwork, Volume,
};
use rusqlite::{Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// One atomic change, committed under one index.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Upserts of jobs' current versions; a version not stored yet is also
    /// appended to the job's versions (a stored one is overwritten, so the
    /// newest version row always equals the current job).
    pub jobs: Vec<Job>,
    /// Job keys: deletes the job and all its versions (its allocations
    /// stay until GC).
    pub purge_jobs: Vec<String>,
    pub nodes: Vec<Node>,
    pub delete_nodes: Vec<String>,
    pub allocs: Vec<Allocation>,
    pub evals: Vec<Evaluation>,
    pub delete_evals: Vec<String>,
    pub deployments: Vec<Deployment>,
    pub namespaces: Vec<Namespace>,
    pub delete_namespaces: Vec<String>,
    /// Local volumes, by [`Volume::own_key`].
    pub volumes: Vec<Volume>,
    /// Keys of local volumes removed.
    pub delete_volumes: Vec<String>,
    /// Named networks' assignments, by [`OverlayNetwork::key`].
    pub networks: Vec<OverlayNetwork>,
    pub delete_networks: Vec<String>,
    /// Configs, by [`edge_spec::objects::object_key`].
    pub configs: Vec<ConfigObject>,
    pub delete_configs: Vec<String>,
    /// Secrets, sealed, by [`edge_spec::objects::object_key`].
    pub secrets: Vec<SecretObject>,
    pub delete_secrets: Vec<String>,
    pub acl_policies: Vec<AclPolicy>,
    pub delete_acl_policies: Vec<String>,
    pub acl_tokens: Vec<AclToken>,
    pub delete_acl_tokens: Vec<String>,
    /// Records the ACL bootstrap (once: it is never undone).
    pub acl_bootstrap: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.purge_jobs.is_empty()
            && self.nodes.is_empty()
            && self.delete_nodes.is_empty()
            && self.allocs.is_empty()
            && self.evals.is_empty()
            && self.delete_evals.is_empty()
            && self.deployments.is_empty()
            && self.namespaces.is_empty()
            && self.delete_namespaces.is_empty()
            && self.volumes.is_empty()
            && self.delete_volumes.is_empty()
            && self.networks.is_empty()
            && self.delete_networks.is_empty()
            && self.configs.is_empty()
            && self.delete_configs.is_empty()
            && self.secrets.is_empty()
            && self.delete_secrets.is_empty()
            && self.acl_policies.is_empty()
            && self.delete_acl_policies.is_empty()
            && self.acl_tokens.is_empty()
            && self.delete_acl_tokens.is_empty()
            && !self.acl_bootstrap
    }

    /// Sets `modify_index` on every object, and an unset `create_index` to
    /// the stored object's, or to `index` for a new object.
    pub(crate) fn stamp(&mut self, index: u64, state: &State) {
        fn set(create: &mut u64, modify: &mut u64, stored: Option<u64>, index: u64) {
            if *create == 0 {
                *create = stored.unwrap_or(index);
            }
            *modify = index;
        }
        for j in &mut self.jobs {
            let stored = state.jobs.get(&j.key()).map(|o| o.create_index);
            set(&mut j.create_index, &mut j.modify_index, stored, index);
        }
        for n in &mut self.nodes {
            let stored = state.nodes.get(&n.id).map(|o| o.create_index);
            set(&mut n.create_index, &mut n.modify_index, stored, index);
        }
        for a in &mut self.allocs {
            let stored = state.allocs.get(&a.id);
            set(
                &mut a.create_index,
                &mut a.modify_index,
                stored.map(|o| o.create_index),
                index,
            );
            a.alloc_modify_index = match stored {
                Some(o) if o.differs_only_in_reports(a) => o.alloc_modify_index,
                _ => index,
            };
        }
        for e in &mut self.evals {
            let stored = state.evals.get(&e.id).map(|o| o.create_index);
            set(&mut e.create_index, &mut e.modify_index, stored, index);
        }
        for d in &mut self.deployments {
            let stored = state.deployments.get(&d.id).map(|o| o.create_index);
            set(&mut d.create_index, &mut d.modify_index, stored, index);
        }
        for ns in &mut self.namespaces {
            let stored = state.namespaces.get(&ns.name).map(|o| o.create_index);
            set(&mut ns.create_index, &mut ns.modify_index, stored, index);
        }
        for v in &mut self.volumes {
            let stored = state.volumes.get(&v.own_key()).map(|o| o.create_index);
            set(&mut v.create_index, &mut v.modify_index, stored, index);
        }
        for n in &mut self.networks {
            let stored = state.networks.get(&n.key()).map(|o| o.create_index);
            set(&mut n.create_index, &mut n.modify_index, stored, index);
        }
        for c in &mut self.configs {
            let stored = state.configs.get(&object_key(&c.namespace, &c.name));
            set(
                &mut c.create_index,
                &mut c.modify_index,
                stored.map(|o| o.create_index),
                index,
            );
        }
        for c in &mut self.secrets {
            let stored = state.secrets.get(&object_key(&c.namespace, &c.name));
            set(
                &mut c.create_index,
                &mut c.modify_index,
                stored.map(|o| o.create_index),
                index,
            );
        }
        for p in &mut self.acl_policies {
            let stored = state.acl_policies.get(&p.name).map(|o| o.create_index);
            set(&mut p.create_index, &mut p.modify_index, stored, index);
        }
        for t in &mut self.acl_tokens {
            let stored = state.acl_tokens.get(&t.accessor_id).map(|o| o.create_index);
            set(&mut t.create_index, &mut t.modify_index, stored, index);
        }
    }
}

/// The whole cluster as the server sees it; a committed prefix of the database.
#[derive(Debug, Default, Clone)]
pub struct State {
    /// The index of the last batch this state includes.
    pub index: u64,
    /// Current version of each job, by job key (`edge_spec::job_key`).
    pub jobs: BTreeMap<String, Job>,
    pub nodes: BTreeMap<String, Node>,
    /// Shared with the writer's copy of the state: each allocation is
    /// held once in memory, however many states hold it.
    pub allocs: HashMap<String, Arc<Allocation>>,
    /// Job key (`edge_spec::job_key`) to all its allocations, terminal
    /// ones included, by id.
    allocs_by_job: HashMap<String, BTreeSet<ById>>,
    /// Node id to all allocations placed on it, by id: a watch answer
    /// walks them without a lookup each.
    allocs_by_node: HashMap<String, BTreeSet<ById>>,
    /// Node id to the index after which an allocation last left what the
    /// node's agent is sent (collected, or its job purged).
    removed_by_node: HashMap<String, u64>,
    /// The same for every node, from the load of the state: what left
    /// before a restart is not known per node any more.
    removed_floor: u64,
    /// Jobs by `(modify_index, key)`, so a watch answer finds the few
    /// jobs changed after an index without looking up every allocation's.
    jobs_by_modify: BTreeSet<(u64, String)>,
    pub evals: BTreeMap<String, Evaluation>,
    /// Job key to the ids of its evaluations.
    pub evals_by_job: HashMap<String, BTreeSet<String>>,
    /// Ids of evaluations still to run (pending) or waiting for room
    /// (blocked), so the worker never scans finished ones.
    pub open_evals: BTreeSet<String>,
    /// Node id to the resources its live allocations hold; nodes holding
    /// nothing have no entry.
    pub usage: HashMap<String, NodeUsage>,
    /// Node id to the highest `alloc_modify_index` of any allocation ever
    /// placed there (the server's changes, not the agent's reports): what
    /// an agent's watch waits on, kept here so that thousands
    /// of watches woken by one commit do not each scan their allocations.
    pub alloc_index_by_node: HashMap<String, u64>,
    pub deployments: BTreeMap<String, Deployment>,
    /// Job key to the ids of its deployments.
    pub deployments_by_job: HashMap<String, BTreeSet<String>>,
    /// Job key to its newest version marked stable, what `auto_revert`
    /// registers again; kept here because versions are read from disk.
    pub stable: HashMap<String, Job>,
    /// Namespaces created by users, by name; `default` is not stored
    /// unless its description was set (see [`State::namespace`]).
    pub namespaces: BTreeMap<String, Namespace>,
    /// Local volumes by [`Volume::own_key`].
    pub volumes: BTreeMap<String, Volume>,
    /// Named networks' assignments by [`OverlayNetwork::key`].
    pub networks: BTreeMap<String, OverlayNetwork>,
    /// Configs by [`object_key`].
    pub configs: BTreeMap<String, ConfigObject>,
    /// Secrets, sealed, by [`object_key`].
    pub secrets: BTreeMap<String, SecretObject>,
    pub acl_policies: BTreeMap<String, AclPolicy>,
    /// By accessor id.
    pub acl_tokens: BTreeMap<String, AclToken>,
    /// The index of the ACL bootstrap, once it happened.
    pub acl_bootstrap: Option<u64>,
}

impl State {
    /// The namespace named `name`, if it exists: `default` always does.
    pub fn namespace(&self, name: &str) -> Option<Namespace> {
        self.namespaces
            .get(name)
            .cloned()
            .or_else(|| (name == DEFAULT_NAMESPACE).then(Namespace::default_namespace))
    }

    /// Every namespace, `default` included, by name.
    pub fn all_namespaces(&self) -> Vec<Namespace> {
        let mut out: Vec<Namespace> = self.namespaces.values().cloned().collect();
        if !self.namespaces.contains_key(DEFAULT_NAMESPACE) {
            out.push(Namespace::default_namespace());
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The job's allocations, ordered by id.
    pub fn job_allocs(&self, job_key: &str) -> Vec<&Allocation> {
        by_id(self.allocs_by_job.get(job_key))
    }

    /// The node's allocations, ordered by id.
    pub fn node_allocs(&self, node_id: &str) -> Vec<&Allocation> {
        by_id(self.allocs_by_node.get(node_id))
    }

    /// The index after which an allocation last left what `node_id`'s
    /// agent is sent (0 for never): until it passes an agent's last
    /// answer, a new answer need not list every id the node holds.
    pub fn node_removed_index(&self, node_id: &str) -> u64 {
        self.removed_by_node
            .get(node_id)
            .copied()
            .unwrap_or(0)
            .max(self.removed_floor)
    }

    /// The current jobs whose modify index is above `index`.
    pub fn jobs_modified_after(&self, index: u64) -> impl Iterator<Item = &Job> {
        self.jobs_by_modify
            .range((index.saturating_add(1), String::new())..)
            .filter_map(|(_, key)| self.jobs.get(key))
    }

    /// The job's deployments, oldest first.
    pub fn job_deployments(&self, job_key: &str) -> Vec<&Deployment> {
        let mut out: Vec<&Deployment> = self
            .deployments_by_job
            .get(job_key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.deployments.get(id))
            .collect();
        out.sort_by_key(|d| (d.create_index, d.create_time));
        out
    }

    /// The job's newest deployment.
    pub fn latest_deployment(&self, job_key: &str) -> Option<&Deployment> {
        self.job_deployments(job_key).pop()
    }

    /// The highest `alloc_modify_index` among the node's allocations (0 for
    /// none): an agent's own reports do not move it.
    pub fn node_alloc_index(&self, node_id: &str) -> u64 {
        self.alloc_index_by_node.get(node_id).copied().unwrap_or(0)
    }

    /// Stamps and applies `b` as the next index, in memory only: a state
    /// built without a database, for tests of the rules that read it.
    pub fn apply_in_memory(&mut self, mut b: Batch) -> u64 {
        let index = self.index + 1;
        b.stamp(index, self);
        let allocs = shared_allocs(&mut b);
        self.apply(&b, &allocs, index);
        index
    }

    /// Applies a stamped batch whose allocations were moved out of it, to
    /// be shared, as `allocs` ([`shared_allocs`]).
    pub(crate) fn apply(&mut self, b: &Batch, allocs: &[Arc<Allocation>], index: u64) {
        debug_assert!(b.allocs.is_empty(), "allocations go in as `allocs`");
        for id in &b.purge_jobs {
            if let Some(old) = self.jobs.remove(id) {
                self.jobs_by_modify.remove(&(old.modify_index, id.clone()));
            }
            self.stable.remove(id);
            // Its allocations drop out of their nodes' answers now.
            for a in self.allocs_by_job.get(id).into_iter().flatten() {
                self.removed_by_node.insert(a.0.node_id.clone(), index);
            }
        }
        for j in &b.jobs {
            self.note_stable(j);
            self.insert_job(j.clone());
        }
        for id in &b.delete_nodes {
            self.nodes.remove(id);
        }
        for n in &b.nodes {
            self.nodes.insert(n.id.clone(), n.clone());
        }
        for a in allocs {
            self.upsert_alloc(a.clone());
        }
        for id in &b.delete_evals {
            self.remove_eval(id);
        }
        for e in &b.evals {
            self.insert_eval(e.clone());
        }
        for d in &b.deployments {
            self.insert_deployment(d.clone());
        }
        for name in &b.delete_namespaces {
            self.namespaces.remove(name);
        }
        for key in &b.delete_volumes {
            self.volumes.remove(key);
        }
        for v in &b.volumes {
            self.volumes.insert(v.own_key(), v.clone());
        }
        for key in &b.delete_networks {
            self.networks.remove(key);
        }
        for n in &b.networks {
            self.networks.insert(n.key(), n.clone());
        }
        for k in &b.delete_configs {
            self.configs.remove(k);
        }
        for c in &b.configs {
            self.configs
                .insert(object_key(&c.namespace, &c.name), c.clone());
        }
        for k in &b.delete_secrets {
            self.secrets.remove(k);
        }
        for c in &b.secrets {
            self.secrets
                .insert(object_key(&c.namespace, &c.name), c.clone());
        }
        for ns in &b.namespaces {
            self.namespaces.insert(ns.name.clone(), ns.clone());
        }
        for name in &b.delete_acl_policies {
            self.acl_policies.remove(name);
        }
        for p in &b.acl_policies {
            self.acl_policies.insert(p.name.clone(), p.clone());
        }
        for id in &b.delete_acl_tokens {
            self.acl_tokens.remove(id);
        }
        for t in &b.acl_tokens {
            self.acl_tokens.insert(t.accessor_id.clone(), t.clone());
        }
        if b.acl_bootstrap && self.acl_bootstrap.is_none() {
            self.acl_bootstrap = Some(index);
        }
        self.index = index;
    }

    fn insert_job(&mut self, j: Job) {
        let key = j.key();
        if let Some(old) = self.jobs.get(&key) {
            self.jobs_by_modify.remove(&(old.modify_index, key.clone()));
        }
        self.jobs_by_modify.insert((j.modify_index, key.clone()));
        self.jobs.insert(key, j);
    }

    /// Drops a terminal allocation for good (GC): the node's agent is
    /// told by the next answer's full list of ids.
    pub(crate) fn collect_alloc(&mut self, id: &str) {
        if let Some(old) = self.remove_alloc(id) {
            self.removed_by_node
                .insert(old.node_id.clone(), self.index.saturating_add(1));
        }
    }

    fn note_stable(&mut self, j: &Job) {
        let key = j.key();
        if j.stable && self.stable.get(&key).is_none_or(|s| s.version <= j.version) {
            self.stable.insert(key, j.clone());
        }
    }

    pub(crate) fn insert_deployment(&mut self, d: Deployment) {
        self.deployments_by_job
            .entry(d.job_key())
            .or_default()
            .insert(d.id.clone());
        self.deployments.insert(d.id.clone(), d);
    }

    pub(crate) fn remove_deployment(&mut self, id: &str) {
        if let Some(old) = self.deployments.remove(id) {
            remove_from(&mut self.deployments_by_job, &old.job_key(), id);
        }
    }

    /// The job's evaluations, in id order.
    pub fn job_evals(&self, job_key: &str) -> Vec<&Evaluation> {
        self.evals_by_job
            .get(job_key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.evals.get(id))
            .collect()
    }

    pub(crate) fn insert_eval(&mut self, e: Evaluation) {
        if matches!(e.status, EvalStatus::Pending | EvalStatus::Blocked) {
            self.open_evals.insert(e.id.clone());
        } else {
            self.open_evals.remove(&e.id);
        }
        self.evals_by_job
            .entry(e.job_key())
            .or_default()
            .insert(e.id.clone());
        self.evals.insert(e.id.clone(), e);
    }

    pub(crate) fn remove_eval(&mut self, id: &str) {
        if let Some(old) = self.evals.remove(id) {
            self.open_evals.remove(id);
            remove_from(&mut self.evals_by_job, &old.job_key(), id);
        }
    }

    fn upsert_alloc(&mut self, a: Arc<Allocation>) {
        // An update on the same node and job (an agent's report, a stop)
        // leaves the index sets as they are: only the usage and the
        // shared copies change.
        if let Some(old) = self.allocs.get_mut(&a.id)
            && old.node_id == a.node_id
            && old.job_id == a.job_id
            && old.namespace == a.namespace
        {
            release(&mut self.usage, old);
            hold(&mut self.usage, &a);
            // The index sets hold the allocation itself: the old copy
            // goes from them too.
            for set in [
                self.allocs_by_node.get_mut(&a.node_id),
                self.allocs_by_job.get_mut(&a.job_key()),
            ]
            .into_iter()
            .flatten()
            {
                set.replace(ById(a.clone()));
            }
            if let Some(idx) = self.alloc_index_by_node.get_mut(&a.node_id) {
                *idx = (*idx).max(a.alloc_modify_index);
            }
            *old = a;
            return;
        }
        // Otherwise removing first keeps usage and the index sets exact
        // when the allocation changes node, job or liveness.
        self.remove_alloc(&a.id);
        hold(&mut self.usage, &a);
        self.allocs_by_job
            .entry(a.job_key())
            .or_default()
            .insert(ById(a.clone()));
        self.allocs_by_node
            .entry(a.node_id.clone())
            .or_default()
            .insert(ById(a.clone()));
        let idx = self
            .alloc_index_by_node
            .entry(a.node_id.clone())
            .or_default();
        *idx = (*idx).max(a.alloc_modify_index);
        self.allocs.insert(a.id.clone(), a);
    }

    /// Drops an allocation and everything derived from it.
    pub(crate) fn remove_alloc(&mut self, id: &str) -> Option<Arc<Allocation>> {
        let old = self.allocs.remove(id)?;
        release(&mut self.usage, &old);
        remove_from(&mut self.allocs_by_job, &old.job_key(), id);
        remove_from(&mut self.allocs_by_node, &old.node_id, id);
        Some(old)
    }
}

/// An allocation in an index set, ordered and found by its id: the set
/// shares the allocation instead of holding a copy of its id (at a
/// million allocations, two states' copies of two index sets' keys were
/// over 250 MB).
#[derive(Debug, Clone)]
struct ById(Arc<Allocation>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

impl std::borrow::Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

fn by_id(set: Option<&BTreeSet<ById>>) -> Vec<&Allocation> {
    set.into_iter().flatten().map(|a| a.0.as_ref()).collect()
}

/// Counts a live allocation's resources on its node.
fn hold(usage: &mut HashMap<String, NodeUsage>, a: &Allocation) {
    if a.is_live() {
        usage.entry(a.node_id.clone()).or_default().add(a);
    }
}

/// Undoes [`hold`]; a node left holding nothing loses its entry.
fn release(usage: &mut HashMap<String, NodeUsage>, a: &Allocation) {
    if a.is_live()
        && let Some(u) = usage.get_mut(&a.node_id)
    {
        u.remove(a);
        if u.allocs == 0 {
            usage.remove(&a.node_id);
        }
    }
}

/// Moves a stamped batch's allocations out of it, to be held once by
/// every state that applies it.
pub(crate) fn shared_allocs(b: &mut Batch) -> Vec<Arc<Allocation>> {
    std::mem::take(&mut b.allocs)
        .into_iter()
        .map(Arc::new)
        .collect()
}

fn remove_from<T: Ord + std::borrow::Borrow<str>>(
    map: &mut HashMap<String, BTreeSet<T>>,
    key: &str,
    id: &str,
) {
    if let Some(set) = map.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

fn load_table<T: DeserializeOwned>(
    conn: &Connection,
    sql: &'static str,
    kind: &'static str,
    mut each: impl FnMut(T),
) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare(sql)
        .map_err(StoreError::sqlite("prepare load"))?;
    let mut rows = stmt.query([]).map_err(StoreError::sqlite("load state"))?;
    while let Some(row) = rows.next().map_err(StoreError::sqlite("load state"))? {
        let key: String = row.get(0).map_err(StoreError::sqlite("load state"))?;
        let body: String = row.get(1).map_err(StoreError::sqlite("load state"))?;
        let obj = serde_json::from_str(&body).map_err(|e| StoreError::Decode {
            kind,
            key,
            source: Arc::new(e),
        })?;
        each(obj);
    }
    Ok(())
}

/// Reads the committed state and index.
pub(crate) fn load(conn: &Connection) -> Result<State, StoreError> {
    let mut s = State {
        index: conn
            .query_row("SELECT idx FROM meta WHERE id = 0", [], |r| r.get(0))
            .map_err(StoreError::sqlite("read index"))?,
        ..State::default()
    };
    // An agent's first answer after a restart lists every id: allocations
    // collected or purged before it are not known per node.
    s.removed_floor = s.index.saturating_add(1);
    load_table(conn, "SELECT id, body FROM jobs", "job", |j: Job| {
        s.insert_job(j);
    })?;
    load_table(conn, "SELECT id, body FROM nodes", "node", |n: Node| {
        s.nodes.insert(n.id.clone(), n);
    })?;
    let mut allocs = Vec::new();
    load_table(
        conn,
        "SELECT id, body FROM allocs",
        "allocation",
        |mut a: Allocation| {
            // Written before the server kept its own changes' index.
            if a.alloc_modify_index == 0 {
                a.alloc_modify_index = a.modify_index;
            }
            allocs.push(a);
        },
    )?;
    for a in allocs {
        s.upsert_alloc(Arc::new(a));
    }
    load_table(
        conn,
        "SELECT id, body FROM evals",
        "evaluation",
        |e: Evaluation| s.insert_eval(e),
    )?;
    load_table(
        conn,
        "SELECT id, body FROM deployments",
        "deployment",
        |d: Deployment| s.insert_deployment(d),
    )?;
    load_table(
        conn,
        "SELECT name, body FROM namespaces",
        "namespace",
        |ns: Namespace| {
            s.namespaces.insert(ns.name.clone(), ns);
        },
    )?;
    load_table(
        conn,
        "SELECT key, body FROM configs",
        "config",
        |c: ConfigObject| {
            s.configs.insert(object_key(&c.namespace, &c.name), c);
        },
    )?;
    load_table(
        conn,
        "SELECT key, body FROM secrets",
        "secret",
        |c: SecretObject| {
            s.secrets.insert(object_key(&c.namespace, &c.name), c);
        },
    )?;
    load_table(
        conn,
        "SELECT key, body FROM networks",
        "network",
        |n: OverlayNetwork| {
            s.networks.insert(n.key(), n);
        },
    )?;
    load_table(
        conn,
        "SELECT key, body FROM volumes",
        "volume",
        |v: Volume| {
            s.volumes.insert(v.own_key(), v);
        },
    )?;
    load_table(
        conn,
        "SELECT name, body FROM acl_policies",
        "acl policy",
        |p: AclPolicy| {
            s.acl_policies.insert(p.name.clone(), p);
        },
    )?;
    load_table(
        conn,
        "SELECT accessor_id, body FROM acl_tokens",
        "acl token",
        |t: AclToken| {
            s.acl_tokens.insert(t.accessor_id.clone(), t);
        },
    )?;
    s.acl_bootstrap = conn
        .query_row("SELECT idx FROM acl_bootstrap WHERE id = 0", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()
        .map_err(StoreError::sqlite("read acl bootstrap"))?
        .map(|i| i as u64);
    let mut stable = Vec::new();
    load_table(
        conn,
        "SELECT job_id, body FROM job_versions
         WHERE json_extract(body, '$.stable') = 1 ORDER BY version",
        "job version",
        |j: Job| stable.push(j),
    )?;
    for j in stable {
        s.note_stable(&j);
    }
    Ok(s)
}
