//! The exec task's `config { ... }` block: its schema, checking it, and filling `${NAME}`
//! from the task env.

use edge_driver::DriverError;
use edge_driver::config::interpolate;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The exec driver's `config` block as written in a job: the one schema,
/// checked at submit and again on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecBlock {
    pub command: String,
    pub args: Option<Vec<String>>,
    /// The user (name or numeric uid) the task runs as; the agent's
    /// default (`nobody`) when unset. Root only where the agent allows it.
    pub user: Option<String>,
}

/// A checked exec task config, with `${NAME}` already filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecTaskConfig {
    pub command: String,
    pub args: Vec<String>,
    pub user: Option<String>,
}

/// The submit-time check of an exec task's `config` block.
pub fn check_config(
    config: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), DriverError> {
    checked(config).map(drop)
}

fn checked(config: &serde_json::Map<String, serde_json::Value>) -> Result<ExecBlock, DriverError> {
    let c: ExecBlock = edge_driver::config::decode(config)?;
    if c.command.trim().is_empty() {
        return Err(DriverError::config("config.command", "must not be empty"));
    }
    if let Some(user) = &c.user
        && (user.is_empty() || user.len() > 32 || user.contains(['/', ':', '\0']))
    {
        return Err(DriverError::config(
            "config.user",
            format!("{user:?} is not a user name or uid"),
        ));
    }
    Ok(c)
}

pub(crate) fn parse(
    config: &serde_json::Map<String, serde_json::Value>,
    env: &BTreeMap<String, String>,
) -> Result<ExecTaskConfig, DriverError> {
    let c = checked(config)?;
    Ok(ExecTaskConfig {
        command: interpolate(&c.command, env),
        args: c
            .args
            .unwrap_or_default()
            .iter()
            .map(|a| interpolate(a, env))
            .collect(),
        user: c.user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("EDGE_PORT_http".to_string(), "8080".to_string()),
            ("NAME".to_string(), "web".to_string()),
        ])
    }

    fn cfg(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn parses_command_and_args() {
        let c = parse(
            &cfg(json!({"command": "/bin/${NAME}", "args": ["-p", "${EDGE_PORT_http}"]})),
            &env(),
        )
        .unwrap();
        assert_eq!(c.command, "/bin/web");
        assert_eq!(c.args, ["-p", "8080"]);
        let c = parse(&cfg(json!({"command": "true"})), &env()).unwrap();
        assert!(c.args.is_empty());
    }

    #[test]
    fn rejects_bad_config_naming_the_field() {
        let field = |v| match parse(&cfg(v), &env()) {
            Err(DriverError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(field(json!({})), "config.command");
        assert_eq!(field(json!({"command": ""})), "config.command");
        assert_eq!(field(json!({"command": 3})), "config.command");
        assert_eq!(field(json!({"command": "x", "args": "a b"})), "config.args");
        assert_eq!(
            field(json!({"command": "x", "args": ["a", 1]})),
            "config.args[1]"
        );
        assert_eq!(
            field(json!({"command": "x", "image": "nginx"})),
            "config.image"
        );
    }

    #[test]
    fn check_names_a_misspelled_key() {
        match check_config(&cfg(json!({"comand": "x"}))) {
            Err(DriverError::Config { field, message }) => {
                assert_eq!(field, "config.comand");
                assert!(message.contains("unknown field `comand`"), "{message}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
        check_config(&cfg(
            json!({"command": "${NOMAD_TASK_DIR}/run", "args": null}),
        ))
        .unwrap();
    }
}
