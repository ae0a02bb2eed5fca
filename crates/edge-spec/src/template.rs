//! A task's `template` blocks (Nomad's): text rendered on the agent from
//! the service catalog, the task's configs and secrets and the node, into
//! a file of the task, and rendered again when what it reads changes.
//!
//! The engine is minijinja (Jinja syntax): it is well kept, sandboxed and
//! bounded by fuel. Nomad's Go-template syntax is refused with the Jinja
//! way to write the same thing, never rendered half right.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bytes of one template's text.
pub const MAX_TEMPLATE: usize = 64 * 1024;
/// Fuel for one render: bounds a template that would loop for ever.
pub const TEMPLATE_FUEL: u64 = 200_000;
/// Bytes of one rendered file.
pub const MAX_RENDERED: usize = 1024 * 1024;

/// What happens to the task when its rendered file changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChangeMode {
    /// The task is restarted (its restart policy does not count it).
    #[default]
    Restart,
    /// The task is sent `change_signal`.
    Signal,
    /// Nothing: the task reads the file when it likes.
    Noop,
}

/// A task's `template { data destination change_mode ... }` block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The template's text (Jinja syntax).
    #[serde(default)]
    pub data: String,
    /// In a job file, read by the CLI from beside it into `data`; left in
    /// a JSON job, refused by validation (the server reads no files).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Relative to the task's directory, under `local/` or `secrets/`
    /// (where a template that reads a secret must write).
    pub destination: String,
    #[serde(default)]
    pub change_mode: ChangeMode,
    /// With `change_mode = "signal"`: `SIGHUP`, `SIGUSR1`...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub change_signal: String,
    /// The file's mode, octal; 0644 when unset.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub perms: String,
    /// Also read the rendered file as `KEY=value` lines into the task's
    /// environment (applied when the task starts).
    #[serde(default)]
    pub env: bool,
}

/// The signals `change_signal` may name.
pub const SIGNALS: &[&str] = &[
    "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGTERM", "SIGQUIT", "SIGWINCH",
];

/// Go-template text that Jinja would misread, with the Jinja spelling.
fn go_syntax(data: &str) -> Option<&'static str> {
    let squeezed: String = data.split_whitespace().collect::<Vec<_>>().join(" ");
    let s = squeezed.replace("{{- ", "{{ ").replace("{{-", "{{ ");
    let hints: &[(&str, &str)] = &[
        (
            "{{ range ",
            "`{% for s in service(\"db\") %}{{ s.Address }}:{{ s.Port }}{% endfor %}`",
        ),
        (
            "{{range ",
            "`{% for s in service(\"db\") %}{{ s.Address }}:{{ s.Port }}{% endfor %}`",
        ),
        ("{{ end }}", "`{% endfor %}` / `{% endif %}`"),
        ("{{end}}", "`{% endfor %}` / `{% endif %}`"),
        ("{{ .", "`{{ s.Address }}` (a loop variable, not `.`)"),
        ("{{.", "`{{ s.Address }}` (a loop variable, not `.`)"),
        ("{{ with ", "`{% if ... %}`"),
        ("{{ key ", "`{{ config(\"NAME\").KEY }}`"),
        ("{{ env ", "`{{ env(\"NAME\") }}`"),
    ];
    hints
        .iter()
        .find(|(go, _)| s.contains(go))
        .map(|(_, jinja)| *jinja)
}

/// What is wrong with a template's text, at which 1-based line if known.
pub fn text_problem(data: &str) -> Option<(Option<usize>, String)> {
    if data.len() > MAX_TEMPLATE {
        return Some((
            None,
            format!(
                "the template is {} bytes; the limit is {MAX_TEMPLATE}",
                data.len()
            ),
        ));
    }
    if let Some(jinja) = go_syntax(data) {
        return Some((
            None,
            format!(
                "this looks like Nomad's Go template syntax, which edge does not render: edge templates are Jinja (minijinja); write {jinja}"
            ),
        ));
    }
    let env = minijinja::Environment::new();
    match env.template_from_str(data) {
        Ok(_) => None,
        Err(e) => Some((
            e.line(),
            format!("template syntax: {}", e.detail().unwrap_or("invalid")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_templates_are_refused_with_the_jinja_spelling() {
        let (_, why) =
            text_problem("{{ range service \"db\" }}{{ .Address }}:{{ .Port }}{{ end }}").unwrap();
        assert!(
            why.contains("Go template") && why.contains("{% for s in service"),
            "{why}"
        );
        assert!(
            text_problem("{% for s in service(\"db\") %}{{ s.Address }}{% endfor %}").is_none()
        );
        let (line, why) = text_problem("ok\n{% for x in %}").unwrap();
        assert_eq!(line, Some(2), "{why}");
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = text_problem(&text);
        }
    }
}
