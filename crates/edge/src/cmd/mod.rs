//! Dispatch of subcommands to the daemons and the API client commands.

mod acl;
mod alloc;
mod compose;
pub mod daemon;
mod deployment;
pub(crate) mod image;
mod job;
pub mod mesh;
mod model;
mod namespace;
mod network;
mod node;
mod objects;
mod service;
mod sim;
mod volume;

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
        Command::Namespace(c) => namespace::run(&g, c).await,
        Command::Service(c) => service::run(&g, c).await,
        Command::Network(c) => network::run(&g, c).await,
        Command::Volume(c) => volume::run(&g, c).await,
        Command::Config(c) => objects::config(&g, c).await,
        Command::Secret(c) => objects::secret(&g, c).await,
        Command::Model(c) => model::run(&g, c).await,
        Command::Compose(a) => compose::run(&g, a).await,
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
    let namespace = g.namespace.clone();
    if !g.address.starts_with("https://") {
        return Ok(edge_api::Client::new(&g.address, token)?.with_namespace(namespace));
    }
    // The cluster CA (or the CA of the server's --tls-cert) from the flag,
    // the environment or a server data dir, beside the system's roots for a
    // --tls-cert a public CA signed.
    let ca_file = g.ca_cert.clone().or_else(|| {
        [".edge/server/ca.pem", "/var/lib/edge/server/ca.pem"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
    });
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &ca_file {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("read CA certificate {}", path.display()))?;
        let certs = edge_api::tls::certs_from_pem(&pem)
            .with_context(|| format!("CA certificate {}", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "CA certificate {}: no PEM certificate in it",
            path.display()
        );
        for c in certs {
            roots
                .add(c)
                .with_context(|| format!("CA certificate {}", path.display()))?;
        }
    }
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    if let Ok(pem) = std::fs::read_to_string(&system)
        && let Ok(certs) = edge_api::tls::certs_from_pem(&pem)
    {
        roots.add_parsable_certificates(certs);
    }
    anyhow::ensure!(
        ca_file.is_some() || !roots.is_empty(),
        "{} is https: pass the cluster CA with --ca-cert or EDGE_CACERT (the server's data dir has it as ca.pem)",
        g.address
    );
    let tls = rustls::ClientConfig::builder_with_provider(edge_api::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(edge_api::Client::with_tls(&g.address, token, tls)?.with_namespace(namespace))
}
