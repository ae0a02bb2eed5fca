//! Checks of `affinity` and `spread` blocks, Nomad's soft placement
//! preferences, with the same limits Nomad puts on them.

use crate::error::Diagnostic;
use crate::job::{Affinity, ConstraintOp, Spread};
use crate::limits::MAX_CONSTRAINTS;
use std::collections::BTreeSet;

/// Problems of the affinities written in the block at `base` (`job.web`,
/// `job.web.group.api`, ...).
pub(crate) fn affinities(list: &[Affinity], base: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if list.len() > MAX_CONSTRAINTS {
        out.push(Diagnostic::new(
            format!("{base}.affinity"),
            format!("{} affinities; the limit is {MAX_CONSTRAINTS}", list.len()),
        ));
        return out;
    }
    for (i, a) in list.iter().enumerate() {
        let path = format!("{base}.affinity[{i}]");
        if !Affinity::takes(a.operator) {
            out.push(Diagnostic::new(
                format!("{path}.operator"),
                format!(
                    "operator {:?} only filters nodes: use it in a `constraint`",
                    a.operator.as_str()
                ),
            ));
        }
        if a.attribute.trim().is_empty() {
            out.push(Diagnostic::new(
                format!("{path}.attribute"),
                "affinity needs an attribute, e.g. \"${node.datacenter}\"",
            ));
        }
        if a.weight == 0 {
            out.push(Diagnostic::new(
                format!("{path}.weight"),
                "affinity weight cannot be zero: from -100 (avoid) to 100 (prefer)",
            ));
        } else if !(-100..=100).contains(&a.weight) {
            out.push(Diagnostic::new(
                format!("{path}.weight"),
                format!("affinity weight must be from -100 to 100, got {}", a.weight),
            ));
        }
        if a.operator == ConstraintOp::Regexp
            && let Err(e) = regex::Regex::new(&a.value)
        {
            out.push(Diagnostic::new(
                format!("{path}.value"),
                format!("invalid regular expression: {e}"),
            ));
        }
        let strict = a.operator == ConstraintOp::Semver;
        if matches!(a.operator, ConstraintOp::Version | ConstraintOp::Semver)
            && !a.value.contains("${")
            && let Err(e) = crate::version::check_constraint(&a.value, strict)
        {
            out.push(Diagnostic::new(
                format!("{path}.value"),
                format!("invalid {} affinity: {e}", a.operator.as_str()),
            ));
        }
    }
    out
}

/// Problems of the spreads written in the block at `base`.
pub(crate) fn spreads(list: &[Spread], base: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if list.len() > MAX_CONSTRAINTS {
        out.push(Diagnostic::new(
            format!("{base}.spread"),
            format!("{} spreads; the limit is {MAX_CONSTRAINTS}", list.len()),
        ));
        return out;
    }
    let mut attributes = BTreeSet::new();
    for (i, s) in list.iter().enumerate() {
        let path = format!("{base}.spread[{i}]");
        if s.attribute.trim().is_empty() {
            out.push(Diagnostic::new(
                format!("{path}.attribute"),
                "spread needs an attribute, e.g. \"${node.datacenter}\"",
            ));
        } else if !attributes.insert(s.attribute.as_str()) {
            out.push(Diagnostic::new(
                format!("{path}.attribute"),
                format!("a spread over {:?} is given twice here", s.attribute),
            ));
        }
        if !(1..=100).contains(&s.weight) {
            out.push(Diagnostic::new(
                format!("{path}.weight"),
                format!("spread weight must be from 1 to 100, got {}", s.weight),
            ));
        }
        if s.targets.len() > MAX_CONSTRAINTS {
            out.push(Diagnostic::new(
                format!("{path}.target"),
                format!(
                    "{} targets; the limit is {MAX_CONSTRAINTS}",
                    s.targets.len()
                ),
            ));
            continue;
        }
        let mut values = BTreeSet::new();
        let mut sum: i64 = 0;
        let mut sum_ok = true;
        for t in &s.targets {
            let at = format!("{path}.target.{}", t.value);
            if t.value.is_empty() {
                out.push(Diagnostic::new(
                    format!("{path}.target"),
                    "a spread target needs a value (its label)",
                ));
            } else if !values.insert(t.value.as_str()) {
                out.push(Diagnostic::new(
                    at.clone(),
                    format!("target {:?} is given twice", t.value),
                ));
            }
            if !(0..=100).contains(&t.percent) {
                out.push(Diagnostic::new(
                    format!("{at}.percent"),
                    format!("percent must be from 0 to 100, got {}", t.percent),
                ));
                sum_ok = false;
            } else {
                sum += t.percent;
            }
        }
        if sum_ok && sum > 100 {
            out.push(Diagnostic::new(
                format!("{path}.target"),
                format!("the targets' percentages add up to {sum}, over 100"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::SpreadTarget;
    use proptest::prelude::*;

    fn affinity(op: ConstraintOp, value: &str, weight: i64) -> Affinity {
        Affinity {
            attribute: "${node.datacenter}".to_string(),
            operator: op,
            value: value.to_string(),
            weight,
        }
    }

    fn spread(weight: i64, targets: &[(&str, i64)]) -> Spread {
        Spread {
            attribute: "${node.datacenter}".to_string(),
            weight,
            targets: targets
                .iter()
                .map(|(v, p)| SpreadTarget {
                    value: v.to_string(),
                    percent: *p,
                })
                .collect(),
        }
    }

    fn fields(d: &[Diagnostic]) -> Vec<String> {
        d.iter().map(|d| d.field.clone()).collect()
    }

    #[test]
    fn affinity_problems_name_their_field() {
        assert!(affinities(&[affinity(ConstraintOp::Eq, "dc1", 50)], "job.a").is_empty());
        let bad = [
            affinity(ConstraintOp::Eq, "dc1", 0),
            affinity(ConstraintOp::Eq, "dc1", -101),
            affinity(ConstraintOp::DistinctHosts, "", 10),
            affinity(ConstraintOp::Regexp, "(", 10),
            affinity(ConstraintOp::Semver, ">>1", 10),
        ];
        let d = affinities(&bad, "job.a");
        assert_eq!(
            fields(&d),
            [
                "job.a.affinity[0].weight",
                "job.a.affinity[1].weight",
                "job.a.affinity[2].operator",
                "job.a.affinity[3].value",
                "job.a.affinity[4].value",
            ]
        );
        assert!(d[0].message.contains("cannot be zero"), "{}", d[0].message);
    }

    #[test]
    fn spread_problems_name_their_field() {
        assert!(spreads(&[spread(50, &[("a", 70), ("b", 30)])], "job.a").is_empty());
        assert!(spreads(&[spread(1, &[])], "job.a").is_empty());
        let d = spreads(&[spread(50, &[("a", 70), ("b", 40)])], "job.a");
        assert_eq!(fields(&d), ["job.a.spread[0].target"]);
        assert!(d[0].message.contains("110"), "{}", d[0].message);
        let d = spreads(&[spread(0, &[("a", 10), ("a", 10)])], "job.a");
        assert_eq!(
            fields(&d),
            ["job.a.spread[0].weight", "job.a.spread[0].target.a"]
        );
        let mut missing = spread(50, &[("a", 101)]);
        missing.attribute = String::new();
        let d = spreads(&[missing.clone(), missing], "job.a");
        assert_eq!(
            fields(&d),
            [
                "job.a.spread[0].attribute",
                "job.a.spread[0].target.a.percent",
                "job.a.spread[1].attribute",
                "job.a.spread[1].target.a.percent",
            ]
        );
        let twice = [spread(50, &[]), spread(50, &[])];
        assert_eq!(
            fields(&spreads(&twice, "job.a")),
            ["job.a.spread[1].attribute"]
        );
    }

    proptest! {
        #[test]
        fn any_weight_is_accepted_or_refused_without_panic(w in any::<i64>()) {
            let d = affinities(&[affinity(ConstraintOp::Eq, "x", w)], "job.a");
            prop_assert_eq!(d.is_empty(), w != 0 && (-100..=100).contains(&w));
            let d = spreads(&[spread(w, &[])], "job.a");
            prop_assert_eq!(d.is_empty(), (1..=100).contains(&w));
        }

        #[test]
        fn any_percentages_are_accepted_or_refused_without_panic(
            ps in proptest::collection::vec(any::<i64>(), 0..6)
        ) {
            let names: Vec<String> = (0..ps.len()).map(|i| format!("v{i}")).collect();
            let targets: Vec<(&str, i64)> =
                names.iter().map(String::as_str).zip(ps.iter().copied()).collect();
            let d = spreads(&[spread(50, &targets)], "job.a");
            let ok = ps.iter().all(|p| (0..=100).contains(p)) && ps.iter().sum::<i64>() <= 100;
            prop_assert_eq!(d.is_empty(), ok);
        }
    }
}
