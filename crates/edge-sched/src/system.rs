//! System jobs: one copy of each group on every usable node where it is
//! feasible; copies on nodes that stopped being feasible are stopped. A
//! changed group rolls node by node: at most `max_parallel` nodes have a
//! replacement not yet judged healthy, `stagger` apart.

use crate::Plan;
use crate::cluster::Cluster;
use crate::feasible::{GroupReq, Reject, in_datacenters};
use crate::reconcile::{
    DESC_DRAIN, DESC_LOST, DESC_NOT_NEEDED, DESC_RESCHEDULED, DESC_UPDATE, Reschedule,
    awaits_reschedule, by_group, keep, reschedule, stop,
};
use edge_spec::{AllocMetric, Allocation, Group, GroupChanges, Update};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) const DESC_INFEASIBLE: &str = "node no longer feasible";

/// A copy to place on one given node.
struct Want<'a> {
    node: usize,
    previous: Option<&'a Allocation>,
    reschedule_times: Vec<i64>,
    then_stop: Option<&'a Allocation>,
}

pub(crate) fn run(cl: &mut Cluster<'_>, plan: &mut Plan) {
    let groups = by_group(cl, plan);
    place(cl, plan, &groups, |_| true);
}

/// Decides and places the job's groups `which` picks, each one copy per
/// usable node: all of a system job's, a service job's `system = true`.
pub(crate) fn place<'a>(
    cl: &mut Cluster<'a>,
    plan: &mut Plan,
    groups: &BTreeMap<&str, Vec<&'a Allocation>>,
    which: impl Fn(&Group) -> bool,
) {
    let job = cl.job;
    let usable = cl.usable();
    let mut decided = Vec::with_capacity(job.groups.len());
    for group in job.groups.iter().filter(|g| which(g)) {
        let allocs = groups
            .get(group.name.as_str())
            .map_or(&[][..], Vec::as_slice);
        let mut req = GroupReq::new(job, group, cl.node_count());
        let mut ch = GroupChanges::default();
        let mut metric = AllocMetric::default();
        let wants = decide(cl, &mut req, allocs, &usable, &mut ch, &mut metric, plan);
        plan.changes.insert(group.name.clone(), ch);
        decided.push((req, wants, metric));
    }
    for (mut req, wants, mut metric) in decided {
        let mut unplaced = 0u32;
        for w in wants {
            let verdict = cl.check(&mut req, w.node);
            cl.tally(&mut metric, &req, w.node, verdict);
            let placed = match verdict {
                Ok(()) => cl.place(&req, w.node, 0, w.previous, w.reschedule_times),
                Err(Reject::Exhausted(_)) => None,
                // Filtered since decided (distinct_hosts): not a failure.
                Err(_) => continue,
            };
            match placed {
                Some(alloc) => {
                    if let Some(old) = w.then_stop {
                        stop(plan, old, DESC_RESCHEDULED, false);
                    }
                    plan.place.push(alloc);
                }
                None => unplaced += 1,
            }
        }
        let name = req.group.name.clone();
        if unplaced > 0 {
            metric.coalesced_failures = unplaced - 1;
            plan.failed.insert(name.clone(), metric);
        }
        plan.queued.insert(name, unplaced);
    }
}

fn decide<'a>(
    cl: &mut Cluster<'a>,
    req: &mut GroupReq<'_>,
    allocs: &[&'a Allocation],
    usable: &[usize],
    ch: &mut GroupChanges,
    metric: &mut AllocMetric,
    plan: &mut Plan,
) -> Vec<Want<'a>> {
    let now = cl.snap.now;
    let mut live: BTreeMap<usize, Vec<&Allocation>> = BTreeMap::new();
    let mut failed: BTreeMap<usize, &Allocation> = BTreeMap::new();
    for &a in allocs {
        if awaits_reschedule(a) {
            if let Some(i) = cl.node_of(a) {
                let newest = failed.entry(i).or_insert(a);
                if a.modify_time > newest.modify_time {
                    *newest = a;
                }
            }
            continue;
        }
        if !a.is_live() {
            continue;
        }
        match cl.node_of(a) {
            Some(i) => live.entry(i).or_default().push(a),
            None => {
                stop(plan, a, DESC_LOST, true);
                cl.release(a);
                ch.lost += 1;
            }
        }
    }

    // A copy holds its node's one slot, so an update is stop, then start
    // on the same node: the budget bounds how many nodes are between the
    // two at once, counting replacements not judged yet.
    let rules = Update::resolve(cl.job, req.group);
    let replacements: Vec<&Allocation> = live
        .values()
        .flatten()
        .copied()
        .filter(|a| a.group_hash == req.hash && a.previous_alloc.is_some())
        .collect();
    let in_flight = replacements.iter().filter(|a| a.health.is_none()).count() as u32;
    let halted = replacements
        .iter()
        .any(|a| a.health.is_some_and(|h| !h.healthy));
    let stagger = i64::try_from(rules.stagger.as_millis()).unwrap_or(i64::MAX);
    let last_healthy = replacements
        .iter()
        .filter_map(|a| a.health.filter(|h| h.healthy).map(|h| h.timestamp))
        .max();
    let waiting = rules.max_parallel > 0
        && stagger > 0
        && last_healthy.is_some_and(|t| t.saturating_add(stagger) > now);
    let mut budget = if rules.max_parallel == 0 {
        u32::MAX
    } else if halted || waiting {
        0
    } else {
        rules.max_parallel.saturating_sub(in_flight)
    };
    let mut wants = Vec::new();
    let mut covered = BTreeSet::new();
    for (i, mut list) in live {
        list.sort_by(|a, b| (a.create_time, &a.id).cmp(&(b.create_time, &b.id)));
        for extra in list.drain(1..) {
            stop(plan, extra, DESC_NOT_NEEDED, false);
            cl.release(extra);
            ch.stop += 1;
        }
        let a = list[0];
        let node = cl.node(i);
        if node.drain {
            stop(plan, a, DESC_DRAIN, false);
            cl.release(a);
            ch.migrate += 1;
            continue;
        }
        covered.insert(i);
        let schedulable = node.schedulable();
        if schedulable && (!in_datacenters(cl.job, node) || req.static_check(i, node).is_err()) {
            stop(plan, a, DESC_INFEASIBLE, false);
            cl.release(a);
            ch.stop += 1;
            covered.remove(&i);
        } else if a.group_hash != req.hash && schedulable && budget == 0 {
            if waiting && let Some(t) = last_healthy {
                let at = t.saturating_add(stagger);
                plan.followup_at = Some(plan.followup_at.map_or(at, |f| f.min(at)));
            }
            ch.ignore += 1;
        } else if a.group_hash != req.hash && schedulable {
            budget -= 1;
            stop(plan, a, DESC_UPDATE, false);
            cl.release(a);
            ch.destructive += 1;
            wants.push(Want {
                node: i,
                previous: Some(a),
                reschedule_times: Vec::new(),
                then_stop: None,
            });
        } else if a.group_hash == req.hash {
            keep(plan, ch, a, cl.job.version);
        } else {
            // An outdated copy on an ineligible node: nothing may replace
            // it there, so it keeps running.
            ch.ignore += 1;
        }
    }

    for &i in usable {
        if covered.contains(&i) {
            continue;
        }
        let node = cl.node(i);
        if let Err(r) = req.static_check(i, node) {
            cl.tally(metric, req, i, Err(r));
            continue;
        }
        let (previous, reschedule_times, then_stop) = match failed.get(&i) {
            None => (None, Vec::new(), None),
            Some(&f) => match reschedule(req.group, f, now) {
                Reschedule::Now(times) => {
                    ch.reschedule_now += 1;
                    (Some(f), times, Some(f))
                }
                Reschedule::Later(at) => {
                    ch.reschedule_later += 1;
                    plan.followup_at = Some(plan.followup_at.map_or(at, |t| t.min(at)));
                    continue;
                }
                Reschedule::Exhausted => {
                    ch.reschedule_exhausted += 1;
                    continue;
                }
            },
        };
        ch.place += 1;
        wants.push(Want {
            node: i,
            previous,
            reschedule_times,
            then_stop,
        });
    }
    wants.sort_by_key(|w| w.node);
    wants
}
