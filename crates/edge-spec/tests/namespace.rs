//! Namespace names from hostile hands: any string is either a DNS label
//! edge accepts or refused with a reason, never a panic; accepted names
//! give job and service keys that no other (namespace, name) pair shares;
//! a job file naming a bad namespace is refused at its line and field.

use edge_spec::namespace::{job_key, namespace_problem, service_key};
use edge_spec::{ParseOptions, parse_hcl, validate};
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_string_is_a_label_or_refused(name in any::<String>()) {
        match namespace_problem(&name) {
            None => {
                prop_assert!((1..=63).contains(&name.len()));
                prop_assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                prop_assert!(!name.starts_with('-') && !name.ends_with('-'));
            }
            Some(reason) => prop_assert!(!reason.is_empty()),
        }
    }

    #[test]
    fn keys_of_accepted_names_never_collide(
        a in "[a-z0-9]{1,8}",
        b in "[a-z0-9]{1,8}",
        x in "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,8}",
        y in "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,8}",
    ) {
        prop_assume!(namespace_problem(&a).is_none() && namespace_problem(&b).is_none());
        prop_assume!((a.as_str(), x.as_str()) != (b.as_str(), y.as_str()));
        prop_assert_ne!(job_key(&a, &x), job_key(&b, &y));
        // Service names hold no `.`: keep only those.
        if !x.contains('.') && !y.contains('.') {
            prop_assert_ne!(service_key(&a, &x), service_key(&b, &y));
        }
    }
}

#[test]
fn a_job_file_with_a_bad_namespace_is_refused_at_its_field() {
    for (ns, want) in [
        ("../../etc", "not a lowercase DNS label"),
        ("Prod", "not a lowercase DNS label"),
        ("tasks", "is reserved"),
    ] {
        let src = format!(
            "job \"web\" {{\n  namespace = \"{ns}\"\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n  }}\n}}\n"
        );
        let err = parse_hcl(&src, &ParseOptions::new("web.hcl"))
            .expect_err("a bad namespace is refused")
            .to_string();
        assert!(
            err.contains("web.hcl:2:15: job.web.namespace") && err.contains(want),
            "{ns}: {err}"
        );
    }
    let src = "job \"web\" {\n  namespace = \"prod\"\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/true\"\n      }\n    }\n  }\n}\n";
    let job = parse_hcl(src, &ParseOptions::new("web.hcl"))
        .expect("decodes")
        .job;
    assert_eq!(job.namespace, "prod");
    assert!(validate(&job).is_empty());
}
