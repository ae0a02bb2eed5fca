//! `edge namespace ...`: create, list, show and delete namespaces.

use crate::cli::{Global, NamespaceCommand, Output};
use crate::output::{emit, table};
use edge_api::NamespaceApplyRequest;

pub async fn run(g: &Global, c: NamespaceCommand) -> anyhow::Result<u8> {
    let api = super::client(g)?;
    match c {
        NamespaceCommand::Apply { name, description } => {
            let ns = api
                .namespace_apply(&name, &NamespaceApplyRequest { description })
                .await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&ns)?);
            } else {
                println!(
                    "Namespace {:?} applied (index {})",
                    ns.name, ns.modify_index
                );
            }
        }
        NamespaceCommand::Ls => {
            let list = api.namespaces().await?;
            emit(g.output, &list, || {
                let mut t = table(&["Name", "Description"]);
                for n in &list {
                    t.add_row(vec![n.name.clone(), n.description.clone()]);
                }
                t
            })?;
        }
        NamespaceCommand::Status { name } => {
            let ns = api.namespace(&name).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&ns)?);
            } else {
                println!("Name         = {}", ns.name);
                println!("Description  = {}", ns.description);
                println!("Create Index = {}", ns.create_index);
                println!("Modify Index = {}", ns.modify_index);
            }
        }
        NamespaceCommand::Delete { name } => {
            let r = api.namespace_delete(&name).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("Namespace {name:?} deleted");
            }
        }
    }
    Ok(0)
}
