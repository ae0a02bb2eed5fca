//! `edge config ...` and `edge secret ...`: put (values from the command
//! line, files or standard input), list, show (configs only) and remove.

use crate::cli::{ConfigCommand, Global, ObjectValueArg, SecretCommand};
use crate::output::{emit, table, time};
use anyhow::Context;
use std::collections::BTreeMap;
use std::io::Read;

/// A value file may hold up to the server's limit for one value.
const MAX_FILE: u64 = edge_spec::objects::MAX_OBJECT_VALUE as u64;

fn values(data: Vec<(String, ObjectValueArg)>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in data {
        let text = match v {
            ObjectValueArg::Text(t) => t,
            ObjectValueArg::File(p) if p.as_os_str() == "-" => {
                let mut s = String::new();
                std::io::stdin()
                    .take(MAX_FILE + 1)
                    .read_to_string(&mut s)
                    .context("read standard input")?;
                s
            }
            ObjectValueArg::File(p) => {
                let len = std::fs::metadata(&p)
                    .with_context(|| format!("cannot read {}", p.display()))?
                    .len();
                anyhow::ensure!(
                    len <= MAX_FILE,
                    "{} is {len} bytes; a value may hold at most {MAX_FILE}",
                    p.display()
                );
                std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read {} (values are text)", p.display()))?
            }
        };
        anyhow::ensure!(
            out.insert(k.clone(), text).is_none(),
            "key {k} is given twice"
        );
    }
    Ok(out)
}

pub async fn config(g: &Global, c: ConfigCommand) -> anyhow::Result<u8> {
    let api = super::client(g)?;
    match c {
        ConfigCommand::Put { name, data } => {
            let r = api.object_put("config", &name, values(data)?).await?;
            println!("config {name} version {}", r.version);
        }
        ConfigCommand::Ls => {
            let list = api.configs().await?;
            emit(g.output, &list, || {
                let mut t = table(&["Name", "Namespace", "Version", "Keys", "Modified"]);
                for c in &list {
                    let keys: Vec<&str> = c.data.keys().map(String::as_str).collect();
                    t.add_row(vec![
                        c.name.clone(),
                        c.namespace.clone(),
                        c.version.to_string(),
                        keys.join(","),
                        time(c.modify_time),
                    ]);
                }
                t
            })?;
        }
        ConfigCommand::Get { name } => {
            let c = api.config(&name).await?;
            emit(g.output, &c, || {
                let mut t = table(&["Key", "Value"]);
                for (k, v) in &c.data {
                    t.add_row(vec![k.clone(), v.clone()]);
                }
                t
            })?;
        }
        ConfigCommand::Rm { name } => {
            api.object_delete("config", &name).await?;
            println!("config {name} deleted");
        }
    }
    Ok(0)
}

pub async fn secret(g: &Global, c: SecretCommand) -> anyhow::Result<u8> {
    let api = super::client(g)?;
    match c {
        SecretCommand::Put { name, data } => {
            let r = api.object_put("secret", &name, values(data)?).await?;
            println!("secret {name} version {}", r.version);
        }
        SecretCommand::Ls => {
            let list = api.secrets().await?;
            emit(g.output, &list, || {
                let mut t = table(&["Name", "Namespace", "Version", "Keys", "Modified"]);
                for c in &list {
                    t.add_row(vec![
                        c.name.clone(),
                        c.namespace.clone(),
                        c.version.to_string(),
                        c.keys.join(","),
                        time(c.modify_time),
                    ]);
                }
                t
            })?;
        }
        SecretCommand::Rm { name } => {
            api.object_delete("secret", &name).await?;
            println!("secret {name} deleted");
        }
    }
    Ok(0)
}
