//! Model files named by URL: downloaded once into a cache, checked against
//! their sha256, and reused by every later start.

use crate::error::ModelError;
use edge_driver::EventSink;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often download progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub(crate) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Where a model with this digest is cached. The name is the digest, so a
/// file there was checked when it was written.
pub(crate) fn cached_path(cache_dir: &Path, sha256: &str) -> PathBuf {
    cache_dir.join(format!("{sha256}.onnx"))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The lowercase hex sha256 of a file.
pub(crate) fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let read = |source| ModelError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(read)?;
        if n == 0 {
            return Ok(hex(&h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Downloads `url` to `dest` unless it is already there, reporting progress,
/// and keeps it only when its sha256 is `sha256`.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    url: &str,
    sha256: &str,
    dest: &Path,
    events: &dyn EventSink,
) -> Result<(), ModelError> {
    if dest.is_file() {
        return Ok(());
    }
    let fail = |reason: String| ModelError::Download {
        url: url.to_string(),
        reason,
    };
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    }
    events.event("Downloading Model", &format!("downloading {url}"));
    let resp = http
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(e.to_string()))?;
    let total = resp.content_length();
    let tmp = dest.with_extension(format!("part-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)
        .map_err(|e| fail(format!("creating {}: {e}", tmp.display())))?;
    let mut hasher = Sha256::new();
    let mut done: u64 = 0;
    let mut last = Instant::now();
    let mut stream = resp.bytes_stream();
    let result = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| fail(e.to_string()))?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .map_err(|e| fail(format!("writing {}: {e}", tmp.display())))?;
            done += chunk.len() as u64;
            if last.elapsed() >= PROGRESS_EVERY {
                last = Instant::now();
                let of = total.map(|t| format!(" of {}", mb(t))).unwrap_or_default();
                events.event("Download Progress", &format!("{}{of}", mb(done)));
            }
        }
        file.sync_all()
            .map_err(|e| fail(format!("writing {}: {e}", tmp.display())))?;
        let actual = hex(&hasher.finalize());
        if actual != sha256 {
            return Err(ModelError::Checksum {
                url: url.to_string(),
                expected: sha256.to_string(),
                actual,
            });
        }
        std::fs::rename(&tmp, dest)
            .map_err(|e| fail(format!("moving into {}: {e}", dest.display())))
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else {
        events.event(
            "Model Downloaded",
            &format!("{} from {url}, sha256 verified", mb(done)),
        );
    }
    result
}
