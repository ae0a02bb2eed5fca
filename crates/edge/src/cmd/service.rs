//! `edge service ...`: the catalog as DNS and the load balancer see it.

use crate::cli::{Global, ServiceCommand};
use crate::output::{emit, short, table};

pub async fn run(g: &Global, c: ServiceCommand) -> anyhow::Result<u8> {
    let api = super::client(g)?;
    match c {
        ServiceCommand::Ls => {
            let list = api.services().await?;
            emit(g.output, &list, || {
                // The name under `.service.edge`: `NAME.NAMESPACE` outside
                // the default namespace (with `-namespace '*'`).
                let mut t = table(&["Name", "Tags", "Instances", "Passing", "Published"]);
                for s in &list {
                    t.add_row(vec![
                        edge_spec::service_key(&s.namespace, &s.name),
                        s.tags.join(","),
                        s.instances.to_string(),
                        s.passing.to_string(),
                        s.publish
                            .as_ref()
                            .map(|p| format!("{} ({:?})", p.port, p.protocol).to_lowercase())
                            .unwrap_or_else(|| "-".to_string()),
                    ]);
                }
                t
            })?;
            Ok(0)
        }
        ServiceCommand::Status { name } => {
            let list = api.service(&name).await?;
            // At zero a scaled service has no instance, only its entry;
            // the table for humans names what scales it.
            let scaled_by = if g.output == crate::cli::Output::Json {
                None
            } else {
                let (catalog, _) = api.catalog(edge_api::QueryOptions::default()).await?;
                catalog
                    .services
                    .into_values()
                    .find(|s| {
                        edge_spec::service_key(&s.namespace, &s.name) == name || s.name == name
                    })
                    .and_then(|s| s.scaled_by)
            };
            if let Some(by) = scaled_by {
                let mut status = api.job_scale_status(&by.job_id).await?;
                status.groups.retain(|k, _| *k == by.group);
                println!("Job           = {}", by.job_id);
                super::job::print_scaling(&status);
                println!("\nInstances");
            }
            emit(g.output, &list, || {
                let mut t = table(&["Alloc", "Job", "Node", "Address", "Status", "Tags"]);
                for i in &list {
                    t.add_row(vec![
                        short(&i.alloc_id).to_string(),
                        i.job_id.clone(),
                        i.node_name.clone(),
                        format!("{}:{}", i.address, i.port),
                        i.status.as_str().to_string(),
                        i.tags.join(","),
                    ]);
                }
                t
            })?;
            Ok(0)
        }
    }
}
