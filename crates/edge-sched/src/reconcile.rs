//! Service and batch jobs: reconcile each group's desired count against its
//! allocations (lost, draining, failed, outdated), then place what is missing.

use crate::cluster::Cluster;
use crate::deploy::{self, Outcome, Phase};
use crate::feasible::GroupReq;
use crate::{InPlaceUpdate, Plan, StopAlloc};
use edge_spec::{
    Allocation, ClientStatus, DependCondition, DesiredStatus, Group, GroupChanges, HealthStatus,
    Job, JobType, MigratePolicy, NodeStatus, Update,
};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) const DESC_LOST: &str = "node down";
pub(crate) const DESC_DRAIN: &str = "node draining";
pub(crate) const DESC_UPDATE: &str = "alloc is being updated due to job update";
pub(crate) const DESC_RESCHEDULED: &str = "rescheduled";
pub(crate) const DESC_NOT_NEEDED: &str = "alloc not needed due to job update";
pub(crate) const DESC_GROUP_REMOVED: &str = "alloc not needed as group was removed from job";

/// Reschedule times kept on a replacement, so a crash loop under an
/// unlimited policy does not grow its allocation without bound.
const MAX_RESCHEDULE_TIMES: usize = 32;

/// What the reschedule policy allows for a failed allocation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reschedule {
    /// Replace it now; the replacement carries these reschedule times.
    Now(Vec<i64>),
    /// Not before this time (Unix milliseconds).
    Later(i64),
    Exhausted,
}

pub(crate) fn reschedule(group: &Group, a: &Allocation, now: i64) -> Reschedule {
    let policy = &group.reschedule;
    let interval = i64::try_from(policy.interval.as_millis()).unwrap_or(i64::MAX);
    let recent = a
        .reschedule_times
        .iter()
        .filter(|&&t| interval == 0 || t > now.saturating_sub(interval))
        .count();
    if !policy.unlimited && recent >= policy.attempts as usize {
        return Reschedule::Exhausted;
    }
    let delay = i64::try_from(policy.delay.as_millis()).unwrap_or(i64::MAX);
    let at = a.modify_time.saturating_add(delay);
    if delay > 0 && at > now {
        return Reschedule::Later(at);
    }
    let keep = MAX_RESCHEDULE_TIMES.max(policy.attempts as usize);
    let mut times = a.reschedule_times.clone();
    times.push(now);
    if times.len() > keep {
        times.drain(..times.len() - keep);
    }
    Reschedule::Now(times)
}

/// A failed allocation still waiting for its replacement.
pub(crate) fn awaits_reschedule(a: &Allocation) -> bool {
    a.desired_status == DesiredStatus::Run
        && a.client_status == ClientStatus::Failed
        && a.next_alloc.is_none()
}

pub(crate) fn stop(plan: &mut Plan, a: &Allocation, description: &str, lost: bool) {
    plan.stop.push(StopAlloc {
        alloc_id: a.id.clone(),
        description: description.to_string(),
        client_status: lost.then_some(ClientStatus::Lost),
    });
}

/// A current copy stays: moved to the job's version in place if older.
pub(crate) fn keep(plan: &mut Plan, ch: &mut GroupChanges, a: &Allocation, version: u64) {
    if a.job_version < version {
        plan.in_place.push(InPlaceUpdate {
            alloc_id: a.id.clone(),
            job_version: version,
        });
        ch.in_place += 1;
    } else {
        ch.ignore += 1;
    }
}

/// Groups the job's allocations by group name, and stops the live ones of
/// groups the job no longer has.
pub(crate) fn by_group<'a>(
    cl: &mut Cluster<'a>,
    plan: &mut Plan,
) -> BTreeMap<&'a str, Vec<&'a Allocation>> {
    let mut groups: BTreeMap<&str, Vec<&Allocation>> = BTreeMap::new();
    for a in &cl.snap.job_allocs {
        groups.entry(a.group.as_str()).or_default().push(a);
    }
    for (name, allocs) in &groups {
        if cl.job.group(name).is_some() {
            continue;
        }
        let mut ch = GroupChanges::default();
        for a in allocs.iter().filter(|a| a.is_live()) {
            let lost = cl.node_of(a).is_none();
            stop(
                plan,
                a,
                if lost { DESC_LOST } else { DESC_GROUP_REMOVED },
                lost,
            );
            cl.release(a);
            if lost {
                ch.lost += 1;
            } else {
                ch.stop += 1;
            }
        }
        plan.changes.insert(name.to_string(), ch);
    }
    groups
}

/// The copies of one index: the outdated one a rolling update keeps until
/// its new copy is healthy, and the current one.
#[derive(Default)]
struct Slot<'a> {
    old: Option<&'a Allocation>,
    new: Option<&'a Allocation>,
}

/// One copy the plan must try to place.
struct Want<'a> {
    index: u32,
    previous: Option<&'a Allocation>,
    reschedule_times: Vec<i64>,
    /// The failed allocation a reschedule replaces, stopped only once its
    /// replacement is placed so that a failed placement is retried later.
    then_stop: Option<&'a Allocation>,
    canary: bool,
    /// Replaces a service copy on a draining node, judged by the group's
    /// `migrate` health rules.
    migration: bool,
}

impl<'a> Want<'a> {
    /// A copy of `old` at `index`, placed beside or instead of it.
    fn replacing(index: u32, old: &'a Allocation) -> Want<'a> {
        Want {
            index,
            previous: Some(old),
            reschedule_times: Vec::new(),
            then_stop: None,
            canary: false,
            migration: false,
        }
    }
}

struct Decided<'a> {
    /// Replacements of allocations the plan stops or reschedules.
    wants: Vec<Want<'a>>,
    /// New copies on top, at the lowest free indexes.
    fresh: u32,
    indexes: Indexes,
    /// Allocations of the group that stay on their nodes.
    kept: Vec<&'a Allocation>,
    /// Nothing is left to roll out once this plan is placed, unless some
    /// of it fails to place.
    settled: bool,
}

/// The indexes `0..count` not held by a kept allocation, a completed batch
/// copy or a replacement, handed out lowest first without materializing a
/// range as large as whatever count a user wrote.
struct Indexes {
    count: u32,
    taken: BTreeSet<u32>,
    next: u32,
}

impl Indexes {
    fn is_free(&self, i: u32) -> bool {
        i < self.count && !self.taken.contains(&i)
    }

    fn take(&mut self, i: u32) -> bool {
        self.is_free(i) && self.taken.insert(i)
    }

    fn lowest(&mut self) -> Option<u32> {
        while self.next < self.count {
            let i = self.next;
            self.next += 1;
            if self.taken.insert(i) {
                return Some(i);
            }
        }
        None
    }

    /// The index a replacement takes: its predecessor's if still free,
    /// else the lowest free one.
    fn claim(&mut self, want: u32) -> u32 {
        if self.take(want) {
            want
        } else {
            self.lowest().unwrap_or(want)
        }
    }
}

pub(crate) fn run(cl: &mut Cluster<'_>, plan: &mut Plan) {
    let groups = by_group(cl, plan);
    let job = cl.job;
    let mut dep = deploy::current(cl.snap, job);
    let before = dep.clone();
    let mut decided = Vec::with_capacity(job.groups.len());
    let mut outcomes = BTreeMap::new();
    // Every stop is decided before any placement, so replacements can use
    // what the stopped allocations free.
    for group in job.groups.iter().filter(|g| !g.system) {
        let allocs = groups
            .get(group.name.as_str())
            .map_or(&[][..], Vec::as_slice);
        let req = GroupReq::new(job, group, cl.node_count());
        let phase = deploy::phase(dep.as_mut(), &group.name, allocs, req.hash);
        let mut ch = GroupChanges::default();
        let d = decide(cl, &req, allocs, &mut ch, plan, &phase);
        plan.changes.insert(group.name.clone(), ch);
        decided.push((req, d, phase));
    }
    for (mut req, d, phase) in decided {
        let settled = d.settled;
        let name = req.group.name.clone();
        let hash = req.hash;
        if let Some(reason) = waits_for(job, req.group, &groups) {
            plan.queued
                .insert(name.clone(), d.wants.len() as u32 + d.fresh);
            plan.waiting.insert(name.clone(), reason);
            outcomes.insert(
                name,
                Outcome {
                    hash,
                    settled: false,
                },
            );
            continue;
        }
        place_group(cl, &mut req, d, plan, &phase);
        let settled = settled && plan.queued.get(&name).is_none_or(|&q| q == 0);
        outcomes.insert(name, Outcome { hash, settled });
    }
    let held: BTreeSet<&str> = job
        .groups
        .iter()
        .filter(|g| g.system)
        .filter_map(|g| {
            let why = waits_for(job, g, &groups)?;
            plan.waiting.insert(g.name.clone(), why);
            Some(g.name.as_str())
        })
        .collect();
    crate::system::place(cl, plan, &groups, |g| {
        g.system && !held.contains(g.name.as_str())
    });
    if let Some(mut d) = dep {
        deploy::advance(&mut d, &groups, &outcomes, plan, cl.snap.now);
        if Some(&d) != before.as_ref() {
            d.modify_time = cl.snap.now;
            plan.deployment = Some(d);
        }
    }
}

/// Why `group` is not placed yet: while it has no live copy, each group
/// it `depends_on` must have `count` copies running (and, for `healthy`,
/// passing every check). Once started it is replaced and scaled freely,
/// as Compose orders services only when it starts them.
fn waits_for(
    job: &Job,
    group: &Group,
    allocs: &BTreeMap<&str, Vec<&Allocation>>,
) -> Option<String> {
    let of = |name: &str| allocs.get(name).map_or(&[][..], Vec::as_slice);
    if group.depends_on.is_empty() || of(&group.name).iter().any(|a| a.is_live()) {
        return None;
    }
    group.depends_on.iter().find_map(|d| {
        let copies = of(&d.group);
        let other = job.group(&d.group)?;
        let ready = copies
            .iter()
            .filter(|a| match d.condition {
                DependCondition::Completed => done_here(job, other, a),
                _ => {
                    a.desired_status == DesiredStatus::Run
                        && a.client_status == ClientStatus::Running
                        && (d.condition == DependCondition::Started
                            || a.checks.values().all(|c| *c == HealthStatus::Passing))
                }
            })
            .count();
        // A group on every node has as many copies as usable nodes took:
        // all of them, and at least one.
        let want = match other {
            g if g.system => copies.iter().filter(|a| a.is_live()).count().max(1),
            g => g.count as usize,
        };
        (ready < want).then(|| {
            format!(
                "waits for group {:?} to be {} ({ready} of {want} copies)",
                d.group,
                d.condition.state()
            )
        })
    })
}

/// A copy that ran to completion and need not run again: a batch job's
/// for good, a `batch = true` group's for its job version (each new
/// version runs it again, as a Compose `up` starts a one-shot service).
fn done_here(job: &Job, group: &Group, a: &Allocation) -> bool {
    a.client_status == ClientStatus::Complete && (!group.batch || a.job_version == job.version)
}

fn decide<'a>(
    cl: &mut Cluster<'a>,
    req: &GroupReq<'_>,
    allocs: &[&'a Allocation],
    ch: &mut GroupChanges,
    plan: &mut Plan,
    phase: &Phase,
) -> Decided<'a> {
    let group = req.group;
    let batch = group.runs_as(cl.job.job_type) == JobType::Batch;
    let now = cl.snap.now;
    let mut completed = BTreeSet::new();
    let mut untainted: Vec<&Allocation> = Vec::new();
    let mut tainted: Vec<(&Allocation, bool)> = Vec::new();
    let mut failed: Vec<&Allocation> = Vec::new();
    for &a in allocs {
        if awaits_reschedule(a) {
            failed.push(a);
        } else if batch && done_here(cl.job, group, a) {
            completed.insert(a.index);
        } else if a.is_live() {
            match cl.node_of(a).map(|i| cl.node(i)) {
                None => tainted.push((a, true)),
                Some(n) if n.drain => tainted.push((a, false)),
                Some(_) => untainted.push(a),
            }
        }
    }
    let done = completed.range(..group.count).count();
    let target = group.count as usize - done;

    // A rolling update keeps an index's outdated copy until its new copy
    // is healthy (or, with canaries, promoted); otherwise one copy per index.
    let rules = Update::resolve(cl.job, group);
    let rolling = rules.deploys(cl.job) && !batch;
    // Oldest first, so the newest of two copies of one index is stopped.
    untainted.sort_by(|a, b| (a.index, a.create_time, &a.id).cmp(&(b.index, b.create_time, &b.id)));
    let mut slots: BTreeMap<u32, Slot<'_>> = BTreeMap::new();
    for a in untainted {
        let slot = slots.entry(a.index).or_default();
        let empty = slot.old.is_none() && slot.new.is_none();
        let place = if a.group_hash == req.hash {
            &mut slot.new
        } else {
            &mut slot.old
        };
        if place.is_none() && (rolling || empty) {
            *place = Some(a);
        } else {
            stop(plan, a, DESC_NOT_NEEDED, false);
            cl.release(a);
            ch.stop += 1;
        }
    }
    while slots.len() > target {
        let Some((_, slot)) = slots.pop_last() else {
            break;
        };
        for a in [slot.old, slot.new].into_iter().flatten() {
            stop(plan, a, DESC_NOT_NEEDED, false);
            cl.release(a);
            ch.stop += 1;
        }
    }
    let mut needed = target - slots.len();
    let mut used: BTreeSet<u32> = slots.keys().copied().collect();
    let mut wants = Vec::new();
    let mut kept: Vec<&Allocation> = Vec::new();
    let mut outdated: Vec<&Allocation> = Vec::new();
    let (mut in_flight, mut beside, mut failed_update) = (0u32, 0u32, false);
    let mut unsettled = false;
    for slot in slots.into_values() {
        if let Some(a) = slot.new {
            kept.push(a);
            keep(plan, ch, a, cl.job.version);
            unsettled |= phase.deployment.is_some()
                && a.deployment_id == phase.deployment
                && a.health.is_none_or(|h| !h.healthy);
        }
        let verdict = slot.new.map(|n| {
            n.health
                .map(|h| h.healthy)
                .or(phase.established(n).then_some(true))
        });
        match (slot.old, verdict) {
            (None, _) => {}
            (Some(old), None) => outdated.push(old),
            // Replaced: the new copy is healthy, and promoted if a canary.
            // Only a rolling update keeps both copies of an index, so only
            // it gets here.
            (Some(old), Some(Some(true))) if phase.canaries.is_none() => {
                stop(plan, old, DESC_UPDATE, false);
                cl.release(old);
                ch.destructive += 1;
            }
            (Some(old), Some(verdict)) => {
                kept.push(old);
                beside += 1;
                failed_update |= verdict == Some(false);
                in_flight += u32::from(verdict.is_none());
            }
        }
    }
    // Without a rolling update every outdated copy is replaced now (stop,
    // then start). Before promotion, canaries are started beside old
    // copies up to their number; after it, at most `max_parallel` new
    // copies are on their way at once (all of them for 0), each started
    // beside the copy it replaces. Nothing moves once a new copy turned
    // out unhealthy or the deployment is paused or failed.
    let surge = rolling && (rules.max_parallel > 0 || phase.canaries.is_some());
    let budget = if !rolling {
        outdated.len()
    } else if failed_update || phase.halted {
        0
    } else if let Some(canaries) = phase.canaries {
        canaries.saturating_sub(beside) as usize
    } else if rules.max_parallel == 0 {
        outdated.len()
    } else {
        rules.max_parallel.saturating_sub(in_flight) as usize
    };
    let old_left = outdated.len() + beside as usize;
    for (i, old) in outdated.into_iter().enumerate() {
        if i >= budget {
            kept.push(old);
            ch.ignore += 1;
            continue;
        }
        if surge {
            kept.push(old);
        } else {
            stop(plan, old, DESC_UPDATE, false);
            cl.release(old);
        }
        let canary = phase.canaries.is_some();
        if canary {
            ch.canary += 1;
        } else {
            ch.destructive += 1;
        }
        wants.push(Want {
            canary,
            ..Want::replacing(old.index, old)
        });
    }
    let settled_so_far = !unsettled && old_left == 0;

    used.extend(completed);
    let mut indexes = Indexes {
        count: group.count,
        taken: used,
        next: 0,
    };
    tainted.sort_by_key(|(a, _)| (a.index, a.create_time));
    // A service copy on a draining node keeps serving until its
    // replacement elsewhere is judged, at most `migrate.max_parallel` on
    // their way at once; lost copies and batch jobs are replaced at once.
    let gentle = !batch && cl.job.job_type == JobType::Service;
    let migrate = MigratePolicy::max_parallel(group);
    let replaced_by: BTreeMap<&str, &Allocation> = allocs
        .iter()
        .filter(|r| r.is_live())
        .filter_map(|r| Some((r.previous_alloc.as_deref()?, *r)))
        .collect();
    let moving = |a: &Allocation| {
        replaced_by
            .get(a.id.as_str())
            .map(|r| r.health.is_none() && r.client_status != ClientStatus::Failed)
    };
    let mut migrating = tainted
        .iter()
        .filter(|(a, lost)| !lost && moving(a) == Some(true))
        .count() as u32;
    let mut draining_kept = false;
    for (a, lost) in tainted {
        if gentle && !lost && migrate > 0 {
            match moving(a) {
                // Judged: the old copy stops; its replacement holds the index.
                Some(false) => {
                    stop(plan, a, DESC_DRAIN, false);
                    cl.release(a);
                    ch.migrate += 1;
                    continue;
                }
                Some(true) => {
                    kept.push(a);
                    draining_kept = true;
                    ch.ignore += 1;
                    continue;
                }
                None if needed == 0 => {}
                None => {
                    needed -= 1;
                    kept.push(a);
                    draining_kept = true;
                    if migrating >= migrate {
                        indexes.take(a.index);
                        ch.ignore += 1;
                        continue;
                    }
                    migrating += 1;
                    ch.migrate += 1;
                    wants.push(Want {
                        migration: true,
                        ..Want::replacing(indexes.claim(a.index), a)
                    });
                    continue;
                }
            }
        }
        stop(plan, a, if lost { DESC_LOST } else { DESC_DRAIN }, lost);
        cl.release(a);
        if lost {
            ch.lost += 1;
        } else {
            ch.migrate += 1;
        }
        if needed == 0 {
            continue;
        }
        needed -= 1;
        if lost {
            ch.place += 1;
        }
        wants.push(Want::replacing(indexes.claim(a.index), a));
    }

    // The newest failure of an index decides for it.
    failed.sort_by(|a, b| (a.index, b.modify_time).cmp(&(b.index, a.modify_time)));
    for a in failed {
        if needed == 0 || !indexes.take(a.index) {
            continue;
        }
        needed -= 1;
        match reschedule(group, a, now) {
            Reschedule::Now(times) => {
                ch.reschedule_now += 1;
                ch.place += 1;
                wants.push(Want {
                    reschedule_times: times,
                    then_stop: Some(a),
                    ..Want::replacing(a.index, a)
                });
            }
            Reschedule::Later(at) => {
                ch.reschedule_later += 1;
                plan.followup_at = Some(plan.followup_at.map_or(at, |f| f.min(at)));
            }
            Reschedule::Exhausted if a.group_hash != req.hash => {
                // A new version of the group deserves a fresh start.
                stop(plan, a, DESC_UPDATE, false);
                ch.destructive += 1;
                wants.push(Want::replacing(a.index, a));
            }
            Reschedule::Exhausted => ch.reschedule_exhausted += 1,
        }
    }

    let fresh = u32::try_from(needed).unwrap_or(u32::MAX);
    ch.place += fresh;
    wants.sort_by_key(|w| w.index);
    Decided {
        settled: settled_so_far && !draining_kept && wants.is_empty() && fresh == 0,
        wants,
        fresh,
        indexes,
        kept,
    }
}

fn place_group(
    cl: &mut Cluster<'_>,
    req: &mut GroupReq<'_>,
    d: Decided<'_>,
    plan: &mut Plan,
    phase: &Phase,
) {
    let mut spread = vec![0u32; cl.node_count()];
    for a in &d.kept {
        if let Some(i) = cl.node_index(&a.node_id) {
            spread[i] += 1;
            cl.count_copy(req, i);
        }
    }
    let total = d.wants.len() as u32 + d.fresh;
    let mut indexes = d.indexes;
    let fresh = (0..d.fresh)
        .map_while(|_| indexes.lowest())
        .map(|index| Want {
            index,
            previous: None,
            reschedule_times: Vec::new(),
            then_stop: None,
            canary: false,
            migration: false,
        });
    let mut done = 0u32;
    let mut failure = None;
    for want in d.wants.into_iter().chain(fresh) {
        // A rescheduled copy prefers another node than the one it failed on.
        let avoid = want
            .then_stop
            .and_then(|a| cl.node_index(&a.node_id))
            .filter(|&i| cl.node(i).status == NodeStatus::Ready);
        let chosen = match cl.pinned(req, want.index) {
            Some(Ok(idx)) => Some(idx),
            Some(Err(m)) => {
                // Only this copy is held to its node: the others may fit.
                failure = Some(m);
                continue;
            }
            None => cl.select(req, &spread, avoid),
        };
        let placed = chosen.and_then(|idx| {
            cl.place(req, idx, want.index, want.previous, want.reschedule_times)
                .map(|a| (idx, a))
        });
        match placed {
            Some((idx, mut alloc)) => {
                alloc.deployment_id.clone_from(&phase.deployment);
                alloc.canary = want.canary;
                alloc.migration = want.migration;
                spread[idx] += 1;
                cl.count_copy(req, idx);
                done += 1;
                if let Some(old) = want.then_stop {
                    stop(plan, old, DESC_RESCHEDULED, false);
                }
                plan.place.push(alloc);
            }
            None => {
                let nodes = cl.usable();
                failure = Some(cl.explain(req, &nodes));
                // Later copies would fail for the same reasons.
                break;
            }
        }
    }
    let unplaced = total - done;
    let name = req.group.name.clone();
    if let Some(mut m) = failure {
        m.coalesced_failures = unplaced - 1;
        plan.failed.insert(name.clone(), m);
    }
    plan.queued.insert(name, unplaced);
}
