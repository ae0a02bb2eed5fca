//! Dispatch of subcommands to the daemons and the API client commands.

mod acl;
mod alloc;
pub mod daemon;
mod deployment;
pub(crate) mod image;
mod job;
pub mod mesh;
mod model;
mod node;
mod service;
mod sim;

use crate::cli::{Cli, Command};
use clap::CommandFactory;

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let g = cli.global.clone();
    match cli.command {
        Command::Server(a) => daemon::server(&g, a).await,
        Command::Agent(a) => daemon::agent(&g, a).await,
        Command::Dev(a) => daemon::dev(&g, a).await,
        Command::Job(c) => job::run(&g, c).await,
        Command::Alloc(c) => alloc::run(&g, c).await,
        Command::Node(c) => node::run(&g, c).await,
        Command::Eval(c) => node::eval(&g, c).await,
        Command::Deployment(c) => deployment::run(&g, c).await,
        Command::Operator(c) => node::operator(&g, c).await,
        Command::Acl(c) => acl::run(&g, c).await,
        Command::Service(c) => service::run(&g, c).await,
        Command::Model(c) => model::run(c).await,
        Command::Sim(a) => sim::run(a).await,
        Command::Version => {
            println!("edge {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "edge", &mut std::io::stdout());
            Ok(0)
        }
        Command::Executor { .. } => Ok(0),
        Command::Image(a) => image::run(&g, a).await,
        Command::ContainerdLogger { .. } => Ok(0),
    }
}

pub fn client(g: &crate::cli::Global) -> anyhow::Result<edge_api::Client> {
    use anyhow::Context;
    // An empty EDGE_TOKEN (`EDGE_TOKEN= edge ...`) means no token.
    let token = g.token.clone().filter(|t| !t.is_empty());
    if !g.address.starts_with("https://") {
        return Ok(edge_api::Client::new(&g.address, token)?);
    }
    let path = match &g.ca_cert {
        Some(p) => p.clone(),
        None => [".edge/server/ca.pem", "/var/lib/edge/server/ca.pem"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .with_context(|| {
                format!(
                    "{} is https: pass the cluster CA with --ca-cert or EDGE_CACERT (the server's data dir has it as ca.pem)",
                    g.address
                )
            })?,
    };
    let pem = std::fs::read_to_string(&path)
        .with_context(|| format!("read CA certificate {}", path.display()))?;
    let ca = edge_api::tls::ClusterCa::known(&pem, None)
        .with_context(|| format!("CA certificate {}", path.display()))?;
    let tls = edge_api::tls::client_config(ca, None)?;
    Ok(edge_api::Client::with_tls(&g.address, token, tls)?)
}
