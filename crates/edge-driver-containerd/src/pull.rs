//! Pulling an image: manifest (through an index to this platform), config
//! and layers from the registry into containerd's content store, then
//! unpacking and the image record. Progress goes to the task's events.

use crate::error::ContainerdError;
use crate::oci::{self, ImageConfig, Index, Manifest};
use crate::reference::Reference;
use crate::registry::Registry;
use crate::store::{self, Store};
use edge_driver::EventSink;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(crate) const EVENT_DOWNLOADING: &str = "Downloading Image";
pub(crate) const EVENT_PROGRESS: &str = "Downloading Image Progress";
pub(crate) const EVENT_PULLED: &str = "Image Pulled";
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
const MAX_CONFIG_BYTES: usize = 16 << 20;

/// Pulls `reference` into `store` (which holds a lease) and records it.
pub(crate) async fn pull(
    store: &Store<'_>,
    registry: &Registry,
    reference: &Reference,
    events: &dyn EventSink,
) -> Result<(), ContainerdError> {
    let name = reference.to_string();
    let started = Instant::now();
    let mut session = registry.session(reference);
    let mut fetched = session.manifest(reference.object()).await?;
    events.event(
        EVENT_DOWNLOADING,
        &format!("pulling {name} from {}", session.source()),
    );
    let mut target = oci::Descriptor {
        media_type: fetched.media_type.clone(),
        digest: fetched.digest.clone(),
        size: fetched.body.len() as i64,
        platform: None,
        annotations: Default::default(),
    };
    if oci::is_index(&fetched.media_type) {
        let index: Index = store::parse_json(&name, &fetched.body)?;
        let Some(d) = oci::pick_platform(&index) else {
            return Err(ContainerdError::image(
                &name,
                format!("no manifest for linux/{}", oci::host_arch()),
            ));
        };
        fetched = session.manifest(&d.digest.clone()).await?;
        target = oci::Descriptor {
            media_type: fetched.media_type.clone(),
            digest: fetched.digest.clone(),
            size: fetched.body.len() as i64,
            platform: None,
            annotations: Default::default(),
        };
    }
    let manifest: Manifest = store::parse_json(&name, &fetched.body)?;
    let config_body = session
        .blob_bytes(&manifest.config.digest, MAX_CONFIG_BYTES)
        .await?;
    let config: ImageConfig = store::parse_json(&name, &config_body)?;
    store::check_config(&name, &manifest, &config)?;

    let total: u64 = manifest.layers.iter().map(|l| l.size.max(0) as u64).sum();
    let mut done: u64 = 0;
    let mut last_report = Instant::now();
    for (i, (layer, diff_id)) in manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .enumerate()
    {
        if store.blob_exists(&layer.digest).await? {
            done += layer.size.max(0) as u64;
            continue;
        }
        let resp = session.blob(&layer.digest).await?;
        let chunks = resp.bytes_stream().map(|r| {
            r.map(|b| b.to_vec())
                .map_err(|e| crate::client::error_chain(&e))
        });
        let labels = HashMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]);
        let base = done;
        let count = manifest.layers.len();
        let report = |written: u64| {
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                events.event(
                    EVENT_PROGRESS,
                    &progress_line(i + 1, count, base + written, total),
                );
            }
        };
        store
            .write_blob(Some(&layer.digest), labels, chunks, report)
            .await?;
        done += layer.size.max(0) as u64;
        events.event(
            EVENT_PROGRESS,
            &progress_line(i + 1, manifest.layers.len(), done, total),
        );
    }
    store
        .put_bytes(
            &config_body,
            store::config_labels(store.snapshotter, &config),
        )
        .await?;
    store
        .put_bytes(&fetched.body, store::manifest_labels(&manifest))
        .await?;
    store
        .unpack(&name, &manifest.layers, &config.rootfs.diff_ids)
        .await?;
    store.set_image(&name, &target).await?;
    events.event(
        EVENT_PULLED,
        &format!(
            "{name} ({}, {}) in {:.1}s",
            human_bytes(total),
            short_digest(&target.digest),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

fn progress_line(layer: usize, layers: usize, done: u64, total: u64) -> String {
    let pct = (done * 100).checked_div(total).unwrap_or(100).min(100);
    format!(
        "layer {layer}/{layers}: {} of {} ({pct}%)",
        human_bytes(done),
        human_bytes(total)
    )
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub(crate) fn short_digest(d: &str) -> &str {
    let hex = d.split_once(':').map_or(d, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_progress() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(
            progress_line(1, 2, 1 << 20, 4 << 20),
            "layer 1/2: 1.0 MiB of 4.0 MiB (25%)"
        );
        assert_eq!(progress_line(1, 1, 0, 0), "layer 1/1: 0 B of 0 B (100%)");
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
    }
}
