//! The connection to containerd: one lazily opened gRPC channel over its
//! unix socket, and requests tagged with edge's namespace (and a lease while
//! content is written, so containerd's GC keeps it until it is referenced).

use crate::error::ContainerdError;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient,
    images_client::ImagesClient, leases_client::LeasesClient, tasks_client::TasksClient,
    version_client::VersionClient,
};
use containerd_client::tonic::Request;
use containerd_client::tonic::metadata::{Ascii, MetadataValue};
use containerd_client::tonic::transport::Channel;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub(crate) struct Conn {
    socket: PathBuf,
    namespace: MetadataValue<Ascii>,
    channel: tokio::sync::Mutex<Option<Channel>>,
}

impl Conn {
    pub(crate) fn new(socket: &Path, namespace: &str) -> Result<Conn, ContainerdError> {
        let namespace = namespace.parse().map_err(|_| ContainerdError::Connect {
            socket: socket.to_path_buf(),
            message: format!("namespace {namespace:?} is not a valid header value"),
        })?;
        Ok(Conn {
            socket: socket.to_path_buf(),
            namespace,
            channel: tokio::sync::Mutex::new(None),
        })
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// The open channel, connecting first when there is none. tonic
    /// reconnects an established channel by itself; [`Conn::reset`] drops
    /// one that keeps failing.
    pub(crate) async fn channel(&self) -> Result<Channel, ContainerdError> {
        let mut guard = self.channel.lock().await;
        if let Some(ch) = guard.as_ref() {
            return Ok(ch.clone());
        }
        let connect = containerd_client::connect(&self.socket);
        let ch = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(ch)) => ch,
            Ok(Err(e)) => {
                return Err(ContainerdError::Connect {
                    socket: self.socket.clone(),
                    message: error_chain(&e),
                });
            }
            Err(_) => {
                return Err(ContainerdError::Connect {
                    socket: self.socket.clone(),
                    message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                });
            }
        };
        *guard = Some(ch.clone());
        Ok(ch)
    }

    pub(crate) async fn reset(&self) {
        *self.channel.lock().await = None;
    }

    /// A request in edge's namespace, inside `lease` when given.
    pub(crate) fn req<T>(&self, msg: T, lease: Option<&str>) -> Request<T> {
        let mut req = Request::new(msg);
        let md = req.metadata_mut();
        md.insert("containerd-namespace", self.namespace.clone());
        if let Some(value) = lease.and_then(|l| l.parse().ok()) {
            md.insert("containerd-lease", value);
        }
        req
    }

    pub(crate) async fn version(&self) -> Result<VersionClient<Channel>, ContainerdError> {
        Ok(VersionClient::new(self.channel().await?))
    }

    pub(crate) async fn tasks(&self) -> Result<TasksClient<Channel>, ContainerdError> {
        Ok(TasksClient::new(self.channel().await?))
    }

    pub(crate) async fn containers(&self) -> Result<ContainersClient<Channel>, ContainerdError> {
        Ok(ContainersClient::new(self.channel().await?))
    }

    pub(crate) async fn content(&self) -> Result<ContentClient<Channel>, ContainerdError> {
        // Blob chunks and manifests can exceed tonic's 4 MiB default.
        Ok(ContentClient::new(self.channel().await?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    pub(crate) async fn images(&self) -> Result<ImagesClient<Channel>, ContainerdError> {
        Ok(ImagesClient::new(self.channel().await?))
    }

    pub(crate) async fn snapshots(&self) -> Result<SnapshotsClient<Channel>, ContainerdError> {
        Ok(SnapshotsClient::new(self.channel().await?))
    }

    pub(crate) async fn diff(&self) -> Result<DiffClient<Channel>, ContainerdError> {
        Ok(DiffClient::new(self.channel().await?))
    }

    pub(crate) async fn leases(&self) -> Result<LeasesClient<Channel>, ContainerdError> {
        Ok(LeasesClient::new(self.channel().await?))
    }
}

/// An error with its causes, since tonic's transport errors hide the
/// useful part (`No such file or directory`) in their source.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_str = s.to_string();
        if !out.contains(&s_str) {
            out.push_str(": ");
            out.push_str(&s_str);
        }
        cur = s.source();
    }
    out
}
