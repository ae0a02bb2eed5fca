//! The OCI (and Docker v2) image JSON documents the driver reads and writes:
//! index, manifest, image config; platform choice and layer chain ids.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub(crate) const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Index {
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// The `config` object of an image config: the defaults a container gets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerConfig {
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == crate::registry::OCI_INDEX || media_type == crate::registry::DOCKER_LIST
}

/// This machine as an OCI platform architecture.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The manifest of an index that runs here: linux on this architecture,
/// preferring no variant or `v8` on arm64. Descriptors without a platform
/// count as matching (single-platform indexes often omit it).
pub(crate) fn pick_platform(index: &Index) -> Option<&Descriptor> {
    let arch = host_arch();
    let fits = |d: &&Descriptor| match &d.platform {
        Some(p) => p.os == "linux" && p.architecture == arch,
        None => !is_index(&d.media_type),
    };
    let mut candidates: Vec<&Descriptor> = index.manifests.iter().filter(fits).collect();
    candidates.sort_by_key(
        |d| match d.platform.as_ref().and_then(|p| p.variant.as_deref()) {
            None | Some("v8") => 0,
            Some(_) => 1,
        },
    );
    candidates.into_iter().next()
}

/// Snapshot chain ids of a layer stack: the first layer's diff id, then
/// `sha256(parent + " " + diff_id)` for each layer above it.
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => crate::sha256_digest(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], crate::sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn picks_the_host_platform() {
        let d = |arch: &str, variant: Option<&str>, digest: &str| Descriptor {
            media_type: crate::registry::OCI_MANIFEST.to_string(),
            digest: digest.to_string(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.to_string(),
                os: "linux".to_string(),
                variant: variant.map(str::to_string),
            }),
            annotations: BTreeMap::new(),
        };
        let index = Index {
            manifests: vec![
                d("s390x", None, "sha256:1"),
                d(host_arch(), Some("v7"), "sha256:2"),
                d(host_arch(), None, "sha256:3"),
            ],
        };
        assert_eq!(pick_platform(&index).unwrap().digest, "sha256:3");
        let none = Index {
            manifests: vec![d("s390x", None, "sha256:1")],
        };
        assert!(pick_platform(&none).is_none() || host_arch() == "s390x");
    }
}
