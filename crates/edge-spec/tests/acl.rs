//! The policy parser takes any text without panicking: random bytes, and
//! random mixes of the policy language's own words, which reach deeper.

use edge_spec::acl::{Acl, Capability, parse_policy};
use proptest::prelude::*;

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("namespace".to_string()),
        Just("node".to_string()),
        Just("agent".to_string()),
        Just("operator".to_string()),
        Just("policy".to_string()),
        Just("capabilities".to_string()),
        Just("\"read\"".to_string()),
        Just("\"write\"".to_string()),
        Just("\"deny\"".to_string()),
        Just("\"*\"".to_string()),
        Just("\"prod-*\"".to_string()),
        Just("\"list-jobs\"".to_string()),
        Just("\"submit-job\"".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("=".to_string()),
        Just(",".to_string()),
        Just("\n".to_string()),
        Just("${x}".to_string()),
        "[a-z\"*é\\-]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_never_panic(src in ".{0,200}") {
        let _ = parse_policy("p.hcl", &src);
    }

    #[test]
    fn policy_words_never_panic(words in proptest::collection::vec(token(), 0..40)) {
        let src = words.join(" ");
        match parse_policy("p.hcl", &src) {
            Ok(p) => {
                let acl = Acl::from_policies([&p]);
                for c in Capability::ALL {
                    let _ = acl.allows_namespace("default", c);
                }
            }
            Err(e) => {
                // Every finding names the file and a line.
                for line in e.to_string().lines() {
                    prop_assert!(line.starts_with("p.hcl"), "{line}");
                }
            }
        }
    }
}
