//! Importing image archives without a registry: OCI image layouts
//! (`oci-layout`, `index.json`, `blobs/sha256/...`) and `docker save`
//! archives (`manifest.json`, config and `layer.tar` files), as tar files.
//! The archive is read once, front to back; every blob is streamed into the
//! content store and hashed on the way.

use crate::error::ContainerdError;
use crate::oci::{self, Descriptor, ImageConfig, Index, Manifest};
use crate::reference::Reference;
use crate::registry::{DOCKER_MANIFEST, OCI_MANIFEST};
use crate::store::{self, Store};
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Small JSON files are kept in memory; anything else is a blob.
const MAX_META_FILE: u64 = 4 << 20;
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// What one pass over the archive found.
#[derive(Default)]
struct Scan {
    /// Archive path → every file written as a blob.
    blobs: HashMap<String, Blob>,
    index: Option<Vec<u8>>,
    docker_manifest: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Blob {
    digest: String,
    size: i64,
    /// Starts with gzip's magic bytes (a compressed layer).
    gzip: bool,
}

enum Item {
    Meta(String, Vec<u8>),
    Blob(String, tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>),
}

fn archive_err(path: &Path, message: impl Into<String>) -> ContainerdError {
    ContainerdError::Archive {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the tar on a blocking thread and hands its files over one by one.
fn read_archive(path: PathBuf, items: tokio::sync::mpsc::Sender<Result<Item, String>>) {
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            let _ = items.blocking_send(Err(format!("cannot open: {e}")));
            return;
        }
    };
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            let _ = items.blocking_send(Err(format!("not a tar archive: {e}")));
            return;
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let _ = items.blocking_send(Err(format!("not a tar archive: {e}")));
                return;
            }
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let Ok(name) = entry
            .path()
            .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
        else {
            continue;
        };
        let meta = matches!(name.as_str(), "index.json" | "manifest.json" | "oci-layout")
            && entry.size() <= MAX_META_FILE;
        if meta {
            let mut buf = Vec::new();
            if let Err(e) = entry.read_to_end(&mut buf) {
                let _ = items.blocking_send(Err(format!("reading {name}: {e}")));
                return;
            }
            if items.blocking_send(Ok(Item::Meta(name, buf))).is_err() {
                return;
            }
            continue;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        if items
            .blocking_send(Ok(Item::Blob(name.clone(), rx)))
            .is_err()
        {
            return;
        }
        loop {
            let mut buf = vec![0u8; READ_CHUNK];
            let n = match read_full(&mut entry, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.blocking_send(Err(format!("reading {name}: {e}")));
                    return;
                }
            };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if tx.blocking_send(Ok(buf)).is_err() {
                return;
            }
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Imports every image of the archive; returns their names.
pub(crate) async fn import(store: &Store<'_>, path: &Path) -> Result<Vec<String>, ContainerdError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let owned = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_archive(owned, tx));
    let mut scan = Scan::default();
    while let Some(item) = rx.recv().await {
        match item.map_err(|m| archive_err(path, m))? {
            Item::Meta(name, body) if name == "index.json" => scan.index = Some(body),
            Item::Meta(name, body) if name == "manifest.json" => scan.docker_manifest = Some(body),
            Item::Meta(..) => {}
            Item::Blob(name, mut chunks) => {
                let named = name
                    .strip_prefix("blobs/sha256/")
                    .map(|hex| format!("sha256:{hex}"));
                let first = chunks.recv().await;
                let gzip = matches!(&first, Some(Ok(c)) if c.starts_with(&[0x1f, 0x8b]));
                let stream = futures_util::stream::iter(first)
                    .chain(tokio_stream::wrappers::ReceiverStream::new(chunks));
                let (digest, size) = store
                    .write_blob(named.as_deref(), HashMap::new(), stream, |_| {})
                    .await
                    .map_err(|e| archive_err(path, format!("{name}: {e}")))?;
                scan.blobs.insert(name, Blob { digest, size, gzip });
            }
        }
    }
    reader
        .await
        .map_err(|e| archive_err(path, format!("reader failed: {e}")))?;
    match (&scan.index, &scan.docker_manifest) {
        (Some(index), _) => import_oci(store, path, &scan, index).await,
        (None, Some(m)) => import_docker(store, path, &scan, m).await,
        (None, None) => Err(archive_err(
            path,
            "neither an OCI layout (index.json) nor a docker save archive (manifest.json)",
        )),
    }
}

fn blob_size(scan: &Scan, digest: &str) -> Option<i64> {
    scan.blobs
        .values()
        .find(|b| b.digest == digest)
        .map(|b| b.size)
}

async fn import_oci(
    store: &Store<'_>,
    path: &Path,
    scan: &Scan,
    index: &[u8],
) -> Result<Vec<String>, ContainerdError> {
    let index: Index =
        serde_json::from_slice(index).map_err(|e| archive_err(path, format!("index.json: {e}")))?;
    let mut names = Vec::new();
    for desc in &index.manifests {
        let name = image_name(desc).ok_or_else(|| {
            archive_err(
                path,
                format!(
                    "manifest {} has no image name (annotation io.containerd.image.name or a full org.opencontainers.image.ref.name)",
                    desc.digest
                ),
            )
        })?;
        let mut manifest_desc = desc.clone();
        if oci::is_index(&desc.media_type) {
            let nested: Index = store::parse_json(&name, &store.read_blob(&desc.digest).await?)?;
            manifest_desc = oci::pick_platform(&nested)
                .ok_or_else(|| {
                    ContainerdError::image(
                        &name,
                        format!("no manifest for linux/{}", oci::host_arch()),
                    )
                })?
                .clone();
        }
        if blob_size(scan, &manifest_desc.digest).is_none() {
            return Err(archive_err(
                path,
                format!("blob {} is missing", manifest_desc.digest),
            ));
        }
        let manifest: Manifest =
            store::parse_json(&name, &store.read_blob(&manifest_desc.digest).await?)?;
        finish(store, &name, &manifest_desc, &manifest).await?;
        names.push(name);
    }
    Ok(names)
}

/// The name an OCI layout gives a manifest: containerd's own annotation, or
/// a ref name that is a whole reference (a bare tag names nothing).
fn image_name(desc: &Descriptor) -> Option<String> {
    if let Some(n) = desc.annotations.get("io.containerd.image.name") {
        return Reference::parse(n).ok().map(|r| r.to_string());
    }
    let r = desc.annotations.get("org.opencontainers.image.ref.name")?;
    if r.contains('/') {
        Reference::parse(r).ok().map(|r| r.to_string())
    } else {
        None
    }
}

async fn import_docker(
    store: &Store<'_>,
    path: &Path,
    scan: &Scan,
    manifest_json: &[u8],
) -> Result<Vec<String>, ContainerdError> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(manifest_json)
        .map_err(|e| archive_err(path, format!("manifest.json: {e}")))?;
    let mut names = Vec::new();
    for entry in entries {
        let find = |file: &str| {
            scan.blobs
                .get(file.trim_start_matches("./"))
                .cloned()
                .ok_or_else(|| archive_err(path, format!("{file} is missing")))
        };
        let config = find(&entry.config)?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let b = find(l)?;
            let media_type = if b.gzip {
                oci::DOCKER_LAYER_GZIP
            } else {
                oci::DOCKER_LAYER_TAR
            };
            layers.push(Descriptor {
                media_type: media_type.to_string(),
                digest: b.digest,
                size: b.size,
                platform: None,
                annotations: BTreeMap::new(),
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(DOCKER_MANIFEST.to_string()),
            config: Descriptor {
                media_type: oci::DOCKER_CONFIG.to_string(),
                digest: config.digest,
                size: config.size,
                platform: None,
                annotations: BTreeMap::new(),
            },
            layers,
        };
        let body = serde_json::to_vec(&manifest)
            .map_err(|e| archive_err(path, format!("encoding manifest: {e}")))?;
        let digest = store
            .put_bytes(&body, store::manifest_labels(&manifest))
            .await?;
        let desc = Descriptor {
            media_type: DOCKER_MANIFEST.to_string(),
            digest,
            size: body.len() as i64,
            platform: None,
            annotations: BTreeMap::new(),
        };
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            return Err(archive_err(
                path,
                format!("image {} has no RepoTags to name it by", entry.config),
            ));
        }
        for tag in tags {
            let name = Reference::parse(&tag)?.to_string();
            finish(store, &name, &desc, &manifest).await?;
            names.push(name);
        }
    }
    Ok(names)
}

/// Labels the blobs for GC, unpacks the layers and records the image.
async fn finish(
    store: &Store<'_>,
    name: &str,
    desc: &Descriptor,
    manifest: &Manifest,
) -> Result<(), ContainerdError> {
    let config: ImageConfig =
        store::parse_json(name, &store.read_blob(&manifest.config.digest).await?)?;
    store::check_config(name, manifest, &config)?;
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let labels = HashMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]);
        store.label_blob(&layer.digest, &labels).await?;
    }
    store
        .label_blob(
            &manifest.config.digest,
            &store::config_labels(store.snapshotter, &config),
        )
        .await?;
    store
        .label_blob(&desc.digest, &store::manifest_labels(manifest))
        .await?;
    store
        .unpack(name, &manifest.layers, &config.rootfs.diff_ids)
        .await?;
    let target = Descriptor {
        media_type: if desc.media_type.is_empty() {
            OCI_MANIFEST.to_string()
        } else {
            desc.media_type.clone()
        },
        ..desc.clone()
    };
    store.set_image(name, &target).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_images_from_annotations() {
        let mut d = Descriptor {
            media_type: OCI_MANIFEST.to_string(),
            digest: "sha256:1".to_string(),
            size: 1,
            platform: None,
            annotations: BTreeMap::new(),
        };
        assert_eq!(image_name(&d), None);
        d.annotations
            .insert("org.opencontainers.image.ref.name".into(), "latest".into());
        assert_eq!(image_name(&d), None);
        d.annotations.insert(
            "org.opencontainers.image.ref.name".into(),
            "edge/web:1".into(),
        );
        assert_eq!(image_name(&d).unwrap(), "docker.io/edge/web:1");
        d.annotations
            .insert("io.containerd.image.name".into(), "localhost/web:2".into());
        assert_eq!(image_name(&d).unwrap(), "localhost/web:2");
    }
}
