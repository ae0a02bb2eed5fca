//! `edge image ...` (import, list and remove images in the local containerd,
//! for nodes without a registry) and the containerd driver's agent flags.

use crate::cli::Global;
use crate::output::{emit, table};
use anyhow::Context;
use clap::{Args, Subcommand};
use edge_driver_containerd::{ContainerdConfig, ContainerdDriver, Credentials, RegistryConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// Agent flags of the containerd driver.
#[derive(Args, Debug, Clone)]
pub struct ContainerdArgs {
    /// Let containers mount host paths outside their allocation's
    /// directory (`volumes`); without it such a task fails to start.
    #[arg(long, env = "EDGE_CONTAINERD_ALLOW_HOST_VOLUMES")]
    pub containerd_allow_host_volumes: bool,
    /// Let containers add capabilities (`cap_add`); without it such a task
    /// fails to start.
    #[arg(long, env = "EDGE_CONTAINERD_ALLOW_CAP_ADD")]
    pub containerd_allow_cap_add: bool,
    /// containerd's socket; without an answer there the containerd driver is
    /// reported unhealthy and no container task is placed on the node.
    #[arg(long, env = "EDGE_CONTAINERD_SOCKET", default_value = DEFAULT_SOCKET)]
    pub containerd_socket: PathBuf,
    /// A registry spoken to over plain HTTP, `HOST:PORT`, repeatable.
    #[arg(long = "registry-insecure", value_name = "HOST:PORT")]
    pub registry_insecure: Vec<String>,
    /// A mirror tried before a registry, `REGISTRY=URL`
    /// (e.g. `docker.io=http://10.0.0.2:5000`), repeatable.
    #[arg(long = "registry-mirror", value_name = "REGISTRY=URL", value_parser = parse_mirror)]
    pub registry_mirror: Vec<(String, String)>,
    /// Registry credentials, `HOST=USER:PASS`, repeatable.
    #[arg(long = "registry-auth", value_name = "HOST=USER:PASS", value_parser = parse_auth)]
    pub registry_auth: Vec<(String, String, String)>,
}

fn parse_mirror(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((r, u)) if !r.is_empty() && !u.is_empty() => Ok((r.to_string(), u.to_string())),
        _ => Err(format!("expected REGISTRY=URL, got {s:?}")),
    }
}

fn parse_auth(s: &str) -> Result<(String, String, String), String> {
    let bad = || "expected HOST=USER:PASS".to_string();
    let (host, creds) = s.split_once('=').ok_or_else(bad)?;
    let (user, pass) = creds.split_once(':').ok_or_else(bad)?;
    if host.is_empty() || user.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), user.to_string(), pass.to_string()))
}

/// The containerd driver of an agent with data in `data_dir`; image archives
/// in `<data_dir>/images/` are imported in the background.
pub fn driver(data_dir: &Path, a: &ContainerdArgs) -> anyhow::Result<Arc<ContainerdDriver>> {
    let mut cfg = ContainerdConfig::new(data_dir.join("containerd"));
    cfg.socket = a.containerd_socket.clone();
    cfg.host_access = edge_driver_containerd::HostAccess {
        host_volumes: a.containerd_allow_host_volumes,
        cap_add: a.containerd_allow_cap_add,
    };
    cfg.logger = Some(
        std::env::current_exe()
            .context("cannot find the edge binary for the containerd log driver")?,
    );
    cfg.registry = RegistryConfig {
        insecure: a.registry_insecure.clone(),
        mirrors: Default::default(),
        auth: a
            .registry_auth
            .iter()
            .map(|(h, u, p)| {
                (
                    h.clone(),
                    Credentials {
                        username: u.clone(),
                        password: p.clone(),
                    },
                )
            })
            .collect(),
    };
    for (registry, url) in &a.registry_mirror {
        cfg.registry
            .mirrors
            .entry(registry.clone())
            .or_default()
            .push(url.clone());
    }
    let d = Arc::new(ContainerdDriver::new(cfg)?);
    d.import_dir_in_background(data_dir.join("images"));
    Ok(d)
}

#[derive(Args, Debug)]
pub struct ImageArgs {
    /// containerd's socket.
    #[arg(long, global = true, env = "EDGE_CONTAINERD_SOCKET", default_value = DEFAULT_SOCKET)]
    pub containerd_socket: PathBuf,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Import image archives (OCI layout or `docker save` tar) into containerd.
    #[command(
        after_help = "Examples:\n  edge image import web.tar\n  docker save nginx:1.25 > nginx.tar && edge image import nginx.tar\n\nArchives put in <agent data dir>/images/ are imported when the agent starts."
    )]
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the images edge's containers can use.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove images (their unused layers are freed).
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
}

pub async fn run(g: &Global, a: ImageArgs) -> anyhow::Result<u8> {
    let d = ContainerdDriver::new(ContainerdConfig {
        socket: a.containerd_socket.clone(),
        ..ContainerdConfig::new(std::env::temp_dir())
    })?;
    d.ping().await?;
    match a.command {
        ImageCommand::Import { files } => {
            for f in files {
                let names = d
                    .import_archive(&f)
                    .await
                    .with_context(|| format!("importing {}", f.display()))?;
                for n in names {
                    println!("Imported {n} from {}", f.display());
                }
            }
        }
        ImageCommand::Ls => {
            let images = d.images().await?;
            emit(g.output, &images, || {
                let mut t = table(&["Name", "Digest", "Size"]);
                for i in &images {
                    let hex = i
                        .digest
                        .split_once(':')
                        .map_or(i.digest.as_str(), |(_, h)| h);
                    t.add_row(vec![
                        i.name.clone(),
                        hex[..hex.len().min(12)].to_string(),
                        human(i.size),
                    ]);
                }
                t
            })?;
        }
        ImageCommand::Rm { images } => {
            for i in images {
                let name = d.remove_image(&i).await?;
                println!("Removed {name}");
            }
        }
    }
    Ok(0)
}

pub(crate) fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
