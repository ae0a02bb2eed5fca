//! containerd's content, image, snapshot and lease services as the driver
//! uses them: streaming blobs into the content store with GC labels,
//! unpacking layers into snapshots, and image records.

use crate::client::Conn;
use crate::error::ContainerdError;
use crate::oci::{self, Descriptor, ImageConfig, Index, Manifest};
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    AbortRequest, ApplyRequest, CreateImageRequest, DeleteImageRequest, GetImageRequest, Image,
    InfoRequest, ListImagesRequest, ReadContentRequest, UpdateImageRequest, UpdateRequest,
    WriteAction, WriteContentRequest,
};
use containerd_client::services::v1::{CreateRequest as CreateLease, DeleteRequest as DeleteLease};
use containerd_client::types::{Descriptor as PbDescriptor, Mount};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};
use tokio_stream::wrappers::ReceiverStream;

/// Blob chunks sent to containerd are gathered up to this size.
const WRITE_CHUNK: usize = 1 << 20;
const MAX_JSON_BLOB: i64 = 16 << 20;
const LEASE_TTL: Duration = Duration::from_secs(3600);

/// Everything about an image a container needs.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedImage {
    pub name: String,
    pub manifest: Descriptor,
    pub layers: Vec<Descriptor>,
    pub config: ImageConfig,
    /// Chain id of the top layer: the snapshot containers start from.
    pub chain_id: String,
}

/// One line of `edge image ls`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageSummary {
    pub name: String,
    pub digest: String,
    /// Manifest, config and layers (compressed) in bytes, when known.
    pub size: u64,
}

/// Store operations, all inside one lease while it lives.
pub(crate) struct Store<'a> {
    pub conn: &'a Conn,
    pub snapshotter: &'a str,
    pub lease: Option<String>,
}

impl<'a> Store<'a> {
    pub(crate) fn new(conn: &'a Conn, snapshotter: &'a str) -> Store<'a> {
        Store {
            conn,
            snapshotter,
            lease: None,
        }
    }

    fn req<T>(&self, msg: T) -> containerd_client::tonic::Request<T> {
        self.conn.req(msg, self.lease.as_deref())
    }

    /// Takes a lease that expires by itself, so a crash mid-pull leaves
    /// nothing behind for long.
    pub(crate) async fn begin_lease(&mut self) -> Result<(), ContainerdError> {
        let id = format!("edge-{}", uuid::Uuid::new_v4());
        let expire = humantime::format_rfc3339_seconds(SystemTime::now() + LEASE_TTL).to_string();
        let labels = HashMap::from([("containerd.io/gc.expire".to_string(), expire)]);
        self.conn
            .leases()
            .await?
            .create(self.conn.req(
                CreateLease {
                    id: id.clone(),
                    labels,
                },
                None,
            ))
            .await
            .map_err(ContainerdError::rpc("create lease"))?;
        self.lease = Some(id);
        Ok(())
    }

    pub(crate) async fn end_lease(&mut self) {
        let Some(id) = self.lease.take() else { return };
        let result = match self.conn.leases().await {
            Ok(mut c) => c
                .delete(self.conn.req(
                    DeleteLease {
                        id: id.clone(),
                        sync: false,
                    },
                    None,
                ))
                .await
                .map(drop)
                .map_err(ContainerdError::rpc("delete lease")),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::debug!(lease = %id, error = %e, "lease left to expire");
        }
    }

    pub(crate) async fn blob_exists(&self, digest: &str) -> Result<bool, ContainerdError> {
        let r = self
            .conn
            .content()
            .await?
            .info(self.req(InfoRequest {
                digest: digest.to_string(),
            }))
            .await
            .map_err(ContainerdError::rpc("content info"));
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ContainerdError> {
        let mut stream = self
            .conn
            .content()
            .await?
            .read(self.req(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(ContainerdError::rpc("content read"))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = stream
            .message()
            .await
            .map_err(ContainerdError::rpc("content read"))?
        {
            out.extend_from_slice(&m.data);
            if out.len() as i64 > MAX_JSON_BLOB {
                return Err(ContainerdError::image(digest, "metadata blob is too large"));
            }
        }
        Ok(out)
    }

    /// Adds labels to a blob that is already in the content store.
    pub(crate) async fn label_blob(
        &self,
        digest: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), ContainerdError> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        self.conn
            .content()
            .await?
            .update(self.req(UpdateRequest {
                info: Some(containerd_client::services::v1::Info {
                    digest: digest.to_string(),
                    labels: labels.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            }))
            .await
            .map_err(ContainerdError::rpc("content update"))?;
        Ok(())
    }

    /// Streams `chunks` into the content store and commits them as one blob,
    /// checked against `expected` when given. Returns the digest and size.
    /// `progress` sees the bytes written so far.
    pub(crate) async fn write_blob<S, E>(
        &self,
        expected: Option<&str>,
        labels: HashMap<String, String>,
        chunks: S,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<(String, i64), ContainerdError>
    where
        S: Stream<Item = Result<Vec<u8>, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let what = expected.unwrap_or("blob").to_string();
        let write_ref = format!("edge-{}", uuid::Uuid::new_v4());
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(4);
        let mut client = self.conn.content().await?;
        let call = async {
            let mut responses = client
                .write(self.req(ReceiverStream::new(rx)))
                .await
                .map_err(ContainerdError::rpc("content write"))?
                .into_inner();
            while responses
                .message()
                .await
                .map_err(ContainerdError::rpc("content write"))?
                .is_some()
            {}
            Ok::<(), ContainerdError>(())
        };
        let feed = async {
            let mut chunks = chunks;
            let mut hasher = Sha256::new();
            let mut offset: i64 = 0;
            let mut buf = Vec::with_capacity(WRITE_CHUNK);
            let send_buf = |buf: &mut Vec<u8>, offset: &mut i64| {
                let data = std::mem::take(buf);
                let req = WriteContentRequest {
                    action: WriteAction::Write as i32,
                    r#ref: write_ref.clone(),
                    offset: *offset,
                    data,
                    ..Default::default()
                };
                *offset += req.data.len() as i64;
                req
            };
            while let Some(chunk) = chunks.next().await {
                let chunk =
                    chunk.map_err(|e| ContainerdError::image(&what, format!("download: {e}")))?;
                hasher.update(&chunk);
                buf.extend_from_slice(&chunk);
                if buf.len() >= WRITE_CHUNK {
                    let req = send_buf(&mut buf, &mut offset);
                    if tx.send(req).await.is_err() {
                        return Ok(None);
                    }
                    progress(offset as u64);
                }
            }
            if !buf.is_empty() {
                let req = send_buf(&mut buf, &mut offset);
                if tx.send(req).await.is_err() {
                    return Ok(None);
                }
                progress(offset as u64);
            }
            let digest = format!("sha256:{:x}", hasher.finalize());
            if let Some(want) = expected
                && want != digest
            {
                return Err(ContainerdError::image(
                    &what,
                    format!("content does not match its digest (got {digest})"),
                ));
            }
            let commit = WriteContentRequest {
                action: WriteAction::Commit as i32,
                r#ref: write_ref.clone(),
                offset,
                total: offset,
                expected: digest.clone(),
                labels,
                ..Default::default()
            };
            let _ = tx.send(commit).await;
            drop(tx);
            Ok(Some((digest, offset)))
        };
        let (call_result, feed_result) = tokio::join!(call, feed);
        let outcome = match (feed_result, call_result) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) if !e.is_already_exists() => Err(e),
            (Ok(Some(done)), _) => Ok(done),
            (Ok(None), _) => Err(ContainerdError::image(
                &what,
                "containerd ended the write early",
            )),
        };
        if outcome.is_err() {
            let _ = self
                .conn
                .content()
                .await?
                .abort(self.req(AbortRequest { r#ref: write_ref }))
                .await;
        }
        outcome
    }

    /// Writes a small in-memory blob unless it is there; labels it either way.
    pub(crate) async fn put_bytes(
        &self,
        body: &[u8],
        labels: HashMap<String, String>,
    ) -> Result<String, ContainerdError> {
        let digest = crate::sha256_digest(body);
        if self.blob_exists(&digest).await? {
            self.label_blob(&digest, &labels).await?;
            return Ok(digest);
        }
        let chunks = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(body.to_vec())]);
        self.write_blob(Some(&digest), labels, chunks, |_| {})
            .await?;
        Ok(digest)
    }

    async fn snapshot_exists(&self, key: &str) -> Result<bool, ContainerdError> {
        let r = self
            .conn
            .snapshots()
            .await?
            .stat(self.req(StatSnapshotRequest {
                snapshotter: self.snapshotter.to_string(),
                key: key.to_string(),
            }))
            .await
            .map_err(ContainerdError::rpc("snapshot stat"));
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn remove_snapshot(&self, key: &str) -> Result<(), ContainerdError> {
        let r = self
            .conn
            .snapshots()
            .await?
            .remove(self.req(RemoveSnapshotRequest {
                snapshotter: self.snapshotter.to_string(),
                key: key.to_string(),
            }))
            .await
            .map_err(ContainerdError::rpc("snapshot remove"));
        match r {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// A writable snapshot on top of `parent`, with the mounts that show it.
    pub(crate) async fn prepare_snapshot(
        &self,
        key: &str,
        parent: &str,
    ) -> Result<Vec<Mount>, ContainerdError> {
        Ok(self
            .conn
            .snapshots()
            .await?
            .prepare(self.req(PrepareSnapshotRequest {
                snapshotter: self.snapshotter.to_string(),
                key: key.to_string(),
                parent: parent.to_string(),
                labels: HashMap::new(),
            }))
            .await
            .map_err(ContainerdError::rpc("snapshot prepare"))?
            .into_inner()
            .mounts)
    }

    /// Applies each layer onto a snapshot of the chain below it and commits
    /// it under its chain id; layers already unpacked are skipped.
    pub(crate) async fn unpack(
        &self,
        image: &str,
        layers: &[Descriptor],
        diff_ids: &[String],
    ) -> Result<String, ContainerdError> {
        let chain = oci::chain_ids(diff_ids);
        let mut parent = String::new();
        for ((layer, chain_id), diff_id) in layers.iter().zip(&chain).zip(diff_ids) {
            if self.snapshot_exists(chain_id).await? {
                parent.clone_from(chain_id);
                continue;
            }
            let key = format!("extract-{}-{chain_id}", uuid::Uuid::new_v4().simple());
            let mounts = self.prepare_snapshot(&key, &parent).await?;
            let applied = async {
                let resp = self
                    .conn
                    .diff()
                    .await?
                    .apply(self.req(ApplyRequest {
                        diff: Some(pb_descriptor(layer)),
                        mounts,
                        payloads: HashMap::new(),
                        sync_fs: false,
                    }))
                    .await
                    .map_err(ContainerdError::rpc("diff apply"))?
                    .into_inner();
                let got = resp.applied.map(|d| d.digest).unwrap_or_default();
                if !got.is_empty() && got != *diff_id {
                    return Err(ContainerdError::image(
                        image,
                        format!(
                            "layer {} unpacked to {got}, expected {diff_id}",
                            layer.digest
                        ),
                    ));
                }
                self.conn
                    .snapshots()
                    .await?
                    .commit(self.req(CommitSnapshotRequest {
                        snapshotter: self.snapshotter.to_string(),
                        name: chain_id.clone(),
                        key: key.clone(),
                        labels: HashMap::new(),
                    }))
                    .await
                    .map_err(ContainerdError::rpc("snapshot commit"))?;
                Ok(())
            }
            .await;
            match applied {
                Ok(()) => {}
                Err(e) if e.is_already_exists() => self.remove_snapshot(&key).await?,
                Err(e) => {
                    let _ = self.remove_snapshot(&key).await;
                    return Err(ContainerdError::image(
                        image,
                        format!("unpacking layer {}: {e}", layer.digest),
                    ));
                }
            }
            parent.clone_from(chain_id);
        }
        Ok(parent)
    }

    /// Creates or moves the image record `name` to `target`.
    pub(crate) async fn set_image(
        &self,
        name: &str,
        target: &Descriptor,
    ) -> Result<(), ContainerdError> {
        let image = Image {
            name: name.to_string(),
            labels: HashMap::new(),
            target: Some(pb_descriptor(target)),
            created_at: None,
            updated_at: None,
        };
        let created = self
            .conn
            .images()
            .await?
            .create(self.req(CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            }))
            .await
            .map_err(ContainerdError::rpc("image create"));
        match created {
            Err(e) if e.is_already_exists() => {
                self.conn
                    .images()
                    .await?
                    .update(self.req(UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".to_string()],
                        }),
                        source_date_epoch: None,
                    }))
                    .await
                    .map_err(ContainerdError::rpc("image update"))?;
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// The image record's target, or `None` when there is no such image.
    pub(crate) async fn image_target(
        &self,
        name: &str,
    ) -> Result<Option<Descriptor>, ContainerdError> {
        let r = self
            .conn
            .images()
            .await?
            .get(self.req(GetImageRequest {
                name: name.to_string(),
            }))
            .await
            .map_err(ContainerdError::rpc("image get"));
        match r {
            Ok(resp) => Ok(resp
                .into_inner()
                .image
                .and_then(|i| i.target)
                .map(|t| from_pb(&t))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads an image's manifest and config from the content store. `None`
    /// when some of it is missing (an interrupted pull).
    pub(crate) async fn resolve(
        &self,
        name: &str,
        target: &Descriptor,
    ) -> Result<Option<ResolvedImage>, ContainerdError> {
        let mut manifest_desc = target.clone();
        if oci::is_index(&target.media_type) {
            if !self.blob_exists(&target.digest).await? {
                return Ok(None);
            }
            let index: Index = parse_json(name, &self.read_blob(&target.digest).await?)?;
            let Some(d) = oci::pick_platform(&index) else {
                return Err(ContainerdError::image(
                    name,
                    format!("no manifest for linux/{}", oci::host_arch()),
                ));
            };
            manifest_desc = d.clone();
        }
        if !self.blob_exists(&manifest_desc.digest).await? {
            return Ok(None);
        }
        let manifest: Manifest = parse_json(name, &self.read_blob(&manifest_desc.digest).await?)?;
        if !self.blob_exists(&manifest.config.digest).await? {
            return Ok(None);
        }
        let config: ImageConfig =
            parse_json(name, &self.read_blob(&manifest.config.digest).await?)?;
        check_config(name, &manifest, &config)?;
        let chain_id = oci::chain_ids(&config.rootfs.diff_ids)
            .pop()
            .unwrap_or_default();
        Ok(Some(ResolvedImage {
            name: name.to_string(),
            manifest: manifest_desc,
            layers: manifest.layers,
            config,
            chain_id,
        }))
    }

    /// Whether the image's layers are all unpacked.
    pub(crate) async fn unpacked(&self, img: &ResolvedImage) -> Result<bool, ContainerdError> {
        self.snapshot_exists(&img.chain_id).await
    }

    /// Unpacks a resolved image whose layers are in the content store.
    pub(crate) async fn unpack_image(&self, img: &ResolvedImage) -> Result<(), ContainerdError> {
        for l in &img.layers {
            if !self.blob_exists(&l.digest).await? {
                return Err(ContainerdError::image(
                    &img.name,
                    format!("layer {} is missing from the content store", l.digest),
                ));
            }
        }
        self.unpack(&img.name, &img.layers, &img.config.rootfs.diff_ids)
            .await
            .map(drop)
    }

    pub(crate) async fn list_images(&self) -> Result<Vec<ImageSummary>, ContainerdError> {
        let images = self
            .conn
            .images()
            .await?
            .list(self.req(ListImagesRequest { filters: vec![] }))
            .await
            .map_err(ContainerdError::rpc("image list"))?
            .into_inner()
            .images;
        let mut out = Vec::new();
        for i in images {
            let Some(t) = i.target.as_ref() else { continue };
            let target = from_pb(t);
            let size = match self.resolve(&i.name, &target).await {
                Ok(Some(r)) => {
                    let layers: i64 = r.layers.iter().map(|l| l.size).sum();
                    (r.manifest.size + layers).max(0) as u64
                }
                _ => target.size.max(0) as u64,
            };
            out.push(ImageSummary {
                name: i.name,
                digest: target.digest,
                size,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(crate) async fn delete_image(&self, name: &str) -> Result<(), ContainerdError> {
        self.conn
            .images()
            .await?
            .delete(self.req(DeleteImageRequest {
                name: name.to_string(),
                sync: true,
                target: None,
            }))
            .await
            .map_err(ContainerdError::rpc("image delete"))?;
        Ok(())
    }
}

/// Labels that make containerd's GC keep a manifest's config and layers.
pub(crate) fn manifest_labels(m: &Manifest) -> HashMap<String, String> {
    let mut labels = HashMap::from([(
        "containerd.io/gc.ref.content.config".to_string(),
        m.config.digest.clone(),
    )]);
    for (i, l) in m.layers.iter().enumerate() {
        labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            l.digest.clone(),
        );
    }
    labels
}

/// Labels that make containerd's GC keep an image config's unpacked layers.
pub(crate) fn config_labels(snapshotter: &str, config: &ImageConfig) -> HashMap<String, String> {
    oci::chain_ids(&config.rootfs.diff_ids)
        .pop()
        .map(|top| HashMap::from([(format!("containerd.io/gc.ref.snapshot.{snapshotter}"), top)]))
        .unwrap_or_default()
}

pub(crate) fn check_config(
    name: &str,
    manifest: &Manifest,
    config: &ImageConfig,
) -> Result<(), ContainerdError> {
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ContainerdError::image(
            name,
            format!(
                "config lists {} layers, manifest {}",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        ));
    }
    if !config.architecture.is_empty() && config.architecture != oci::host_arch() {
        return Err(ContainerdError::image(
            name,
            format!(
                "built for {} and cannot run on {}",
                config.architecture,
                oci::host_arch()
            ),
        ));
    }
    if !config.os.is_empty() && config.os != "linux" {
        return Err(ContainerdError::image(
            name,
            format!("built for {} and cannot run on linux", config.os),
        ));
    }
    Ok(())
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    name: &str,
    body: &[u8],
) -> Result<T, ContainerdError> {
    serde_json::from_slice(body)
        .map_err(|e| ContainerdError::image(name, format!("bad image metadata: {e}")))
}

pub(crate) fn pb_descriptor(d: &Descriptor) -> PbDescriptor {
    PbDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: HashMap::new(),
    }
}

fn from_pb(d: &PbDescriptor) -> Descriptor {
    Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        platform: None,
        annotations: BTreeMap::new(),
    }
}
