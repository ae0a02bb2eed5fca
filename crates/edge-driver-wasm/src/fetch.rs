//! Downloading modules given by URL into the node's module cache, checked
//! against the task's `sha256` when it has one.

use crate::error::WasmError;
use crate::runtime::{sha256_hex, write_atomic};
use edge_driver::EventSink;
use std::path::{Path, PathBuf};

/// Modules larger than this are refused rather than held in memory.
const MAX_MODULE_BYTES: usize = 256 << 20;

/// The local file a URL module is kept in: by its expected hash when the task
/// gives one, else by the URL (fetched once per node).
pub(crate) fn cached_path(dir: &Path, url: &str, sha256: Option<&str>) -> PathBuf {
    match sha256 {
        Some(sum) => dir.join(format!("{sum}.wasm")),
        None => dir.join(format!("url-{}.wasm", sha256_hex(url.as_bytes()))),
    }
}

pub(crate) async fn fetch(
    client: &reqwest::Client,
    dir: &Path,
    url: &str,
    sha256: Option<&str>,
    events: &dyn EventSink,
) -> Result<PathBuf, WasmError> {
    let path = cached_path(dir, url, sha256);
    if path.exists() {
        return Ok(path);
    }
    events.event("Downloading module", &format!("downloading {url}"));
    let failed = |message: String| WasmError::Download {
        url: url.to_string(),
        message,
    };
    let mut resp = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| failed(e.to_string()))?;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| failed(e.to_string()))? {
        if body.len() + chunk.len() > MAX_MODULE_BYTES {
            return Err(failed(format!(
                "module is larger than {} MiB",
                MAX_MODULE_BYTES >> 20
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let actual = sha256_hex(&body);
    if let Some(expected) = sha256
        && expected != actual
    {
        return Err(WasmError::Checksum {
            url: url.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    write_atomic(&path, &body)
        .map_err(|e| WasmError::io(format!("writing {}", path.display()), e))?;
    events.event(
        "Downloaded module",
        &format!("{url}: {} bytes, sha256 {actual}", body.len()),
    );
    Ok(path)
}
