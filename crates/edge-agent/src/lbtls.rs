//! TLS secrets of published services: every node's load balancer
//! terminates TLS for them, so the agent fetches each one a catalog names,
//! keeps it on a tmpfs of its own (never the node's disk) and hands the
//! load balancer the catalog with those files in place of the secret.

use edge_api::{Catalog, Client};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The tmpfs holding the load balancer's keys.
const TMPFS: &str = "size=4m,mode=0700";

/// Where a published TLS secret's PEM files go: `None` for names that
/// cannot be paths (never stored by a validating server).
fn files(dir: &Path, namespace: &str, secret: &str) -> Option<(PathBuf, PathBuf)> {
    edge_spec::namespace::namespace_problem(namespace)
        .is_none()
        .then_some(())?;
    edge_spec::check_name(edge_spec::NameKind::Volume, secret).ok()?;
    let base = dir.join(namespace).join(secret);
    Some((base.join("cert.pem"), base.join("key.pem")))
}

/// The (namespace, secret) pairs a catalog's published services name.
fn named(cat: &Catalog) -> BTreeSet<(String, String)> {
    cat.services
        .values()
        .filter_map(|s| {
            let tls = s.publish.as_ref()?.tls.as_ref()?;
            (!tls.secret.is_empty()).then(|| (s.namespace.clone(), tls.secret.clone()))
        })
        .collect()
}

/// The catalog as the load balancer takes it: a TLS secret stands for
/// its files here.
pub(crate) fn rewrite(dir: &Path, cat: &Catalog) -> Catalog {
    let mut out = cat.clone();
    for s in out.services.values_mut() {
        let ns = s.namespace.clone();
        let Some(tls) = s.publish.as_mut().and_then(|p| p.tls.as_mut()) else {
            continue;
        };
        if tls.secret.is_empty() {
            continue;
        }
        if let Some((cert, key)) = files(dir, &ns, &tls.secret) {
            tls.cert_file = cert.display().to_string();
            tls.key_file = key.display().to_string();
        }
    }
    out
}

/// Fetches every TLS secret the catalog names and writes its files, before
/// the load balancer is handed the catalog that points at them.
pub(crate) async fn materialize(api: &Client, node_id: &str, dir: &Path, cat: &Catalog) {
    let wanted = named(cat);
    if wanted.is_empty() {
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        tracing::warn!(
            "published services terminate TLS with secrets, which need the agent to run as root (their keys live on a tmpfs): this node's load balancer cannot serve them"
        );
        return;
    }
    if !crate::data::mounted(dir) {
        let made = std::fs::create_dir_all(dir)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                nix::mount::mount(
                    Some("tmpfs"),
                    dir,
                    Some("tmpfs"),
                    nix::mount::MsFlags::MS_NOSUID
                        | nix::mount::MsFlags::MS_NODEV
                        | nix::mount::MsFlags::MS_NOEXEC,
                    Some(TMPFS),
                )
                .map_err(|e| e.to_string())
            });
        if let Err(e) = made {
            tracing::warn!(path = %dir.display(), error = %e, "cannot mount the load balancer's tmpfs for TLS secrets");
            return;
        }
    }
    for (ns, name) in wanted {
        let Some((cert, key)) = files(dir, &ns, &name) else {
            continue;
        };
        let value = match api.agent_tls(node_id, &ns, &name).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(namespace = %ns, secret = %name, error = %e, "cannot fetch a published service's TLS secret: its files stay as they were");
                continue;
            }
        };
        for (path, k) in [(&cert, "cert"), (&key, "key")] {
            let Some(text) = value.data.get(k) else {
                tracing::warn!(secret = %name, key = k, "a TLS secret lacks a key");
                continue;
            };
            if let Err(e) = write(path, text) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write a TLS secret for the load balancer");
            }
        }
    }
}

/// Writes 0600, through a rename, and only when the text changed.
fn write(path: &Path, text: &str) -> Result<(), String> {
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    crate::state::write_atomic(path, text.as_bytes()).map_err(|e| e.to_string())
}
