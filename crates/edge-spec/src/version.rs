//! The `version` and `semver` constraint operators: a node attribute such
//! as `${attr.kernel.version}` checked against clauses like
//! `">= 5.4, < 7"` (comma means and; `=`, `!=`, `<`, `<=`, `>`, `>=` and
//! the pessimistic `~>`). `semver` takes SemVer 2.0 versions as they are
//! (pre-releases order before their release); `version` is lenient, as
//! Nomad's is: `5.10` is `5.10.0`, and what follows the numbers
//! (`5.10.0-21-amd64`) is left out.

use semver::Version;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `~> 1.2` is `>= 1.2, < 2`; `~> 1.2.3` is `>= 1.2.3, < 1.3`.
    Pessimistic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    op: Op,
    version: Version,
    /// How many numbers the clause gave (for `~>`).
    parts: usize,
}

/// A version, leniently (`version`) or strictly (`semver`), with the count
/// of numbers it was written with.
fn parse_version(s: &str, strict: bool) -> Option<(Version, usize)> {
    let s = s.trim().trim_start_matches('v');
    if strict {
        return Version::parse(s).ok().map(|v| (v, 3));
    }
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let nums: Vec<&str> = s[..end].split('.').filter(|p| !p.is_empty()).collect();
    if nums.is_empty() || nums.len() > 3 {
        return None;
    }
    let mut n = [0u64; 3];
    for (i, p) in nums.iter().enumerate() {
        n[i] = p.parse().ok()?;
    }
    Some((Version::new(n[0], n[1], n[2]), nums.len()))
}

fn parse_clauses(constraint: &str, strict: bool) -> Result<Vec<Clause>, String> {
    let mut out = Vec::new();
    for raw in constraint.split(',') {
        let c = raw.trim();
        let (op, rest) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            ("~>", Op::Pessimistic),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ]
        .into_iter()
        .find_map(|(p, op)| c.strip_prefix(p).map(|rest| (op, rest)))
        .unwrap_or((Op::Eq, c));
        let (version, parts) = parse_version(rest, strict).ok_or_else(|| {
            if strict {
                format!(
                    "{:?} is not a SemVer version (MAJOR.MINOR.PATCH)",
                    rest.trim()
                )
            } else {
                format!("{:?} is not a version", rest.trim())
            }
        })?;
        out.push(Clause { op, version, parts });
    }
    Ok(out)
}

/// Why `constraint` is not one the operator can check, if it is not.
pub fn check_constraint(constraint: &str, strict: bool) -> Result<(), String> {
    parse_clauses(constraint, strict).map(drop)
}

/// Whether `version` meets every clause of `constraint`; a version or
/// constraint that does not parse meets none.
pub fn satisfies(version: &str, constraint: &str, strict: bool) -> bool {
    let (Some((v, _)), Ok(clauses)) = (
        parse_version(version, strict),
        parse_clauses(constraint, strict),
    ) else {
        return false;
    };
    clauses.iter().all(|c| {
        let ord = v.cmp_precedence(&c.version);
        match c.op {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Pessimistic => {
                let upper = if c.parts >= 3 {
                    Version::new(c.version.major, c.version.minor.saturating_add(1), 0)
                } else {
                    Version::new(c.version.major.saturating_add(1), 0, 0)
                };
                ord != Ordering::Less && v.cmp_precedence(&upper) == Ordering::Less
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lenient_versions_as_nomad_documents_them() {
        for (v, c, want) in [
            ("5.10.0-21-amd64", ">= 5.4", true),
            ("5.10.0-21-amd64", ">= 5.4, < 6", true),
            ("4.19.0", ">= 5.4", false),
            ("1.2", "= 1.2.0", true),
            ("1.2.7", "~> 1.2", true),
            ("2.0.0", "~> 1.2", false),
            ("1.2.9", "~> 1.2.3", true),
            ("1.3.0", "~> 1.2.3", false),
            ("1.2.2", "~> 1.2.3", false),
            ("3.1", "!= 3.1", false),
            ("v0.9.1", "> 0.9", true),
            ("linux", ">= 1", false),
        ] {
            assert_eq!(satisfies(v, c, false), want, "{v} {c}");
        }
    }

    #[test]
    fn semver_orders_pre_releases_before_their_release() {
        assert!(satisfies("1.3.0-beta1", "< 1.3.0", true));
        assert!(!satisfies("1.3.0-beta1", ">= 1.3.0", true));
        assert!(satisfies("1.3.0", ">= 1.3.0-beta1", true));
        assert!(satisfies("2.0.0+build.5", "= 2.0.0", true));
        // Strict: two numbers are not a SemVer version.
        assert!(!satisfies("1.2", ">= 1.0.0", true));
        assert!(check_constraint(">= 1.0", true).is_err());
        assert!(check_constraint(">= 1.0", false).is_ok());
        let err = check_constraint(">= one", false).unwrap_err();
        assert!(err.contains("\"one\""), "{err}");
    }

    proptest! {
        #[test]
        fn any_text_is_checked_without_panicking(v in "\\PC{0,20}", c in "\\PC{0,30}", strict in any::<bool>()) {
            let _ = satisfies(&v, &c, strict);
            let _ = check_constraint(&c, strict);
        }

        #[test]
        fn a_version_meets_its_own_equality(a in 0u64..1000, b in 0u64..1000, c in 0u64..1000) {
            let v = format!("{a}.{b}.{c}");
            let (eq, range, ne) = (format!("= {v}"), format!(">= {v}, <= {v}"), format!("!= {v}"));
            prop_assert!(satisfies(&v, &eq, true));
            prop_assert!(satisfies(&v, &range, false));
            prop_assert!(!satisfies(&v, &ne, false));
        }
    }
}
