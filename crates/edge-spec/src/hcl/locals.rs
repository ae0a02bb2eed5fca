//! HCL2 `locals` blocks, as Nomad reads them: values named once at the top
//! of a job file and used as `local.NAME` anywhere in it. Locals may name
//! variables and each other in any order; each is evaluated once, after
//! the locals it names. A cycle, an undefined local or a broken expression
//! is an error at the local that has it, and what uses a broken local is
//! skipped rather than reported twice.

use super::Decoder;
use super::expr::{self, local_refs};
use hcl_edit::Span;
use hcl_edit::structure::{Attribute, Body, Structure};
use std::collections::{BTreeMap, BTreeSet};

impl Decoder<'_> {
    pub(super) fn resolve_locals(&mut self, body: &Body) {
        let mut defs: BTreeMap<String, &Attribute> = BTreeMap::new();
        for block in body.blocks().filter(|b| b.ident.as_str() == "locals") {
            if !block.labels.is_empty() {
                self.error(block.span(), "locals", "a `locals` block takes no label");
            }
            for s in block.body.iter() {
                match s {
                    Structure::Attribute(a) => {
                        let name = a.key.as_str();
                        if defs.contains_key(name) {
                            self.error(
                                a.key.span(),
                                &format!("local.{name}"),
                                format!("local `{name}` is defined twice"),
                            );
                        } else {
                            defs.insert(name.to_string(), a);
                        }
                    }
                    Structure::Block(b) => self.error(
                        b.ident.span(),
                        &format!("locals.{}", b.ident.as_str()),
                        "a `locals` block holds attributes only (`name = value`)",
                    ),
                }
            }
        }
        let names: BTreeSet<String> = defs.keys().cloned().collect();
        let deps: BTreeMap<&str, BTreeSet<String>> = defs
            .iter()
            .map(|(n, a)| {
                let refs = local_refs(&a.value);
                (
                    n.as_str(),
                    refs.into_iter().filter(|r| names.contains(r)).collect(),
                )
            })
            .collect();
        let mut values = ::hcl::Map::new();
        let mut done: BTreeSet<String> = BTreeSet::new();
        loop {
            let ready: Vec<&str> = deps
                .iter()
                .filter(|(n, d)| !done.contains(**n) && d.iter().all(|r| done.contains(r)))
                .map(|(n, _)| *n)
                .collect();
            if ready.is_empty() {
                break;
            }
            for name in ready {
                self.scope.set_locals(values.clone(), names.clone());
                let attr = defs[name];
                match expr::eval(&attr.value, &self.scope) {
                    Ok(v) => {
                        values.insert(name.to_string(), v);
                    }
                    Err(e) => self.report(e, attr.value.span(), &format!("local.{name}")),
                }
                done.insert(name.to_string());
            }
        }
        // What is left waits on itself: a cycle, or a local that names one.
        for (name, d) in &deps {
            if !done.contains(*name) {
                let waits: Vec<&str> = d
                    .iter()
                    .filter(|r| !done.contains(*r))
                    .map(String::as_str)
                    .collect();
                self.error(
                    defs[*name].key.span(),
                    &format!("local.{name}"),
                    format!(
                        "local `{name}` cannot be evaluated: it depends on itself through `local.{}`",
                        waits.join("`, `local.")
                    ),
                );
            }
        }
        self.scope.set_locals(values, names);
    }
}
