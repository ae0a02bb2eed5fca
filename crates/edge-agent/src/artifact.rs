//! Task artifacts: fetched (http, https, or a file under a directory the
//! operator offered with `--artifact-dir`), checked against their checksum,
//! unpacked when they are archives, and moved into the task's directory
//! before it starts. Each is staged in a directory of the allocation the
//! task cannot reach, so what it unpacks is checked before the task sees
//! any of it, and links the task left in its own directory are refused,
//! never followed (`beneath.rs`). Archives hold files and directories
//! only: an entry leaving the destination (`../`, an absolute path), a
//! link or a device fails the artifact, as Nomad's go-getter refuses
//! symlinks since 1.5. Bounds: `edge_spec::artifact` (a GiB fetched and a
//! GiB unpacked, 100,000 entries, ten minutes).

use edge_spec::artifact::{
    ARTIFACT_TIMEOUT, ArchiveKind, Artifact, ArtifactMode, MAX_ARCHIVE_ENTRIES, MAX_ARTIFACT_BYTES,
    Source,
};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// What fetching needs from the agent.
pub(crate) struct Fetcher<'a> {
    pub http: &'a reqwest::Client,
    /// Directories `file://` sources may come from.
    pub dirs: &'a [PathBuf],
}

/// Fetches every artifact of a task into `root/<task>/`, where `root` is
/// the allocation's directory. The message of an error names the artifact.
pub(crate) async fn fetch_all(
    f: &Fetcher<'_>,
    root: &Path,
    task: &str,
    artifacts: &[Artifact],
) -> Result<(), String> {
    for a in artifacts {
        let staging = root.join(".artifacts").join(task);
        let _ = std::fs::remove_dir_all(&staging);
        let result =
            match tokio::time::timeout(ARTIFACT_TIMEOUT, fetch(f, root, task, a, &staging)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "timed out after {}",
                    edge_spec::duration::format(ARTIFACT_TIMEOUT)
                )),
            };
        let _ = std::fs::remove_dir_all(&staging);
        result.map_err(|e| format!("artifact {}: {e}", a.source))?;
    }
    Ok(())
}

async fn fetch(
    f: &Fetcher<'_>,
    root: &Path,
    task: &str,
    a: &Artifact,
    staging: &Path,
) -> Result<(), String> {
    let dest = a.destination_path()?;
    let checksum = a.checksum()?;
    let archive = a.archive()?;
    std::fs::create_dir_all(staging).map_err(|e| format!("cannot stage it: {e}"))?;
    let file = staging.join("download");
    match a.source()? {
        Source::Http(url) => download(f.http, url, &file).await?,
        Source::File(path) => {
            let from = offered(f.dirs, Path::new(path))?;
            let to = file.clone();
            blocking(move || copy_capped(&from, &to)).await?;
        }
    }
    if let Some(c) = checksum {
        let path = file.clone();
        let got = blocking(move || digest(&path, c.algorithm)).await?;
        if got != c.hex {
            return Err(format!(
                "checksum mismatch, expected {}:{}, got {}:{got}",
                c.algorithm, c.hex, c.algorithm
            ));
        }
    }
    let out = staging.join("out");
    let target: Vec<String> = match (archive, a.mode) {
        (Some(kind), _) => {
            let (from, to) = (file.clone(), out.clone());
            blocking(move || unpack(kind, &from, &to)).await?;
            dest
        }
        (None, ArtifactMode::File) => {
            std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
            let mut dest = dest;
            let name = dest.pop().unwrap_or_default();
            std::fs::rename(&file, out.join(&name)).map_err(|e| e.to_string())?;
            dest
        }
        (None, _) => {
            std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
            let name = a.file_name().ok_or("the source names no file")?.to_string();
            std::fs::rename(&file, out.join(name)).map_err(|e| e.to_string())?;
            dest
        }
    };
    let mut rel = PathBuf::from(task);
    rel.extend(&target);
    place(root, &rel, &out)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
}

/// Streams `url` into `to`, at most [`MAX_ARTIFACT_BYTES`].
async fn download(http: &reqwest::Client, url: &str, to: &Path) -> Result<(), String> {
    let mut resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .error_for_status()
        .map_err(|e| e.to_string())?;
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ARTIFACT_BYTES)
    {
        return Err(too_big());
    }
    let mut out = std::fs::File::create(to).map_err(|e| e.to_string())?;
    let mut total = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        total += chunk.len() as u64;
        if total > MAX_ARTIFACT_BYTES {
            return Err(too_big());
        }
        out.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn too_big() -> String {
    format!("larger than the limit of {MAX_ARTIFACT_BYTES} bytes")
}

/// `path` when it lies under one of the directories the operator offered
/// (links resolved first, so one cannot point out of them).
fn offered(dirs: &[PathBuf], path: &Path) -> Result<PathBuf, String> {
    if dirs.is_empty() {
        return Err(
            "file sources are read only under a directory the agent offers with --artifact-dir, and it offers none"
                .to_string(),
        );
    }
    let real = path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .any(|d| real.starts_with(d))
    {
        Ok(real)
    } else {
        Err(format!(
            "{} is not under a directory the agent offers with --artifact-dir",
            path.display()
        ))
    }
}

fn copy_capped(from: &Path, to: &Path) -> Result<(), String> {
    let src = std::fs::File::open(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let mut out = std::fs::File::create(to).map_err(|e| e.to_string())?;
    let n = std::io::copy(&mut src.take(MAX_ARTIFACT_BYTES + 1), &mut out)
        .map_err(|e| format!("{}: {e}", from.display()))?;
    if n > MAX_ARTIFACT_BYTES {
        return Err(too_big());
    }
    Ok(())
}

/// The lowercase hex digest of `path` with `algorithm`.
fn digest(path: &Path, algorithm: &str) -> Result<String, String> {
    use sha2::Digest;
    fn run<D: sha2::Digest + Write>(mut d: D, path: &Path) -> Result<Vec<u8>, String> {
        let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
        std::io::copy(&mut f, &mut d).map_err(|e| e.to_string())?;
        Ok(d.finalize().to_vec())
    }
    let bytes = match algorithm {
        "sha256" => run(sha2::Sha256::new(), path)?,
        "sha512" => run(sha2::Sha512::new(), path)?,
        "sha1" => run(sha1::Sha1::new(), path)?,
        "md5" => run(md5::Md5::new(), path)?,
        other => return Err(format!("checksum type {other:?} is not known")),
    };
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What unpacking has written so far, against the bounds.
#[derive(Default)]
struct Budget {
    bytes: u64,
    entries: usize,
}

impl Budget {
    fn entry(&mut self) -> Result<(), String> {
        self.entries += 1;
        if self.entries > MAX_ARCHIVE_ENTRIES {
            return Err(format!(
                "the archive holds more than {MAX_ARCHIVE_ENTRIES} entries"
            ));
        }
        Ok(())
    }

    /// Copies one file's contents, counted against the byte bound.
    fn copy(&mut self, from: &mut impl Read, to: &Path, mode: u32) -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|e| format!("{}: {e}", to.display()))?;
        let left = MAX_ARTIFACT_BYTES - self.bytes;
        let n = std::io::copy(&mut from.take(left + 1), &mut out).map_err(|e| e.to_string())?;
        if n > left {
            return Err(format!(
                "the archive unpacks to more than the limit of {MAX_ARTIFACT_BYTES} bytes"
            ));
        }
        self.bytes += n;
        use std::os::unix::fs::PermissionsExt;
        // Readable by the task's user whoever the archive says owns it;
        // set-id bits never survive.
        let mode = (mode & 0o755) | 0o644;
        out.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())
    }
}

/// The entry's path below the destination, refused when it would leave it.
fn entry_path(out: &Path, name: &Path) -> Result<PathBuf, String> {
    let mut p = out.to_path_buf();
    let mut any = false;
    for c in name.components() {
        match c {
            Component::Normal(n) => {
                p.push(n);
                any = true;
            }
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "archive entry {:?} leaves the destination: refused",
                    name.display().to_string()
                ));
            }
        }
    }
    if !any {
        return Ok(out.to_path_buf());
    }
    Ok(p)
}

/// Unpacks `archive` into the new directory `out`.
fn unpack(kind: ArchiveKind, archive: &Path, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    let file = std::io::BufReader::new(file);
    match kind {
        ArchiveKind::Tar => untar(file, out),
        ArchiveKind::TarGz => untar(flate2::read::GzDecoder::new(file), out),
        ArchiveKind::Zip => unzip(archive, out),
    }
}

fn untar(r: impl Read, out: &Path) -> Result<(), String> {
    let mut budget = Budget::default();
    let mut ar = tar::Archive::new(r);
    let bad = |e: std::io::Error| format!("not a readable tar archive: {e}");
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        budget.entry()?;
        let name = entry.path().map_err(bad)?.into_owned();
        let path = entry_path(out, &name)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            let mode = entry.header().mode().unwrap_or(0o644);
            budget.copy(&mut entry, &path, mode)?;
        } else if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            continue;
        } else {
            return Err(format!(
                "archive entry {:?} is a link or special file: only files and directories are unpacked",
                name.display().to_string()
            ));
        }
    }
    Ok(())
}

fn unzip(archive: &Path, out: &Path) -> Result<(), String> {
    let file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    let bad = |e: zip::result::ZipError| format!("not a readable zip archive: {e}");
    let mut zip = zip::ZipArchive::new(file).map_err(bad)?;
    let mut budget = Budget::default();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(bad)?;
        budget.entry()?;
        let name = PathBuf::from(entry.name());
        let path = entry_path(out, &name)?;
        let mode = entry.unix_mode();
        if mode.is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(format!(
                "archive entry {:?} is a link: only files and directories are unpacked",
                entry.name()
            ));
        }
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        budget.copy(&mut entry, &path, mode.unwrap_or(0o644))?;
    }
    Ok(())
}

/// Moves everything in `staged` into directory `rel` under `root`,
/// replacing what has the same name there.
fn place(root: &Path, rel: &Path, staged: &Path) -> Result<(), String> {
    use nix::fcntl::{OFlag, open, renameat};
    use nix::sys::stat::Mode;
    let dest = crate::beneath::dir(root, rel)
        .map_err(|e| format!("cannot open {}: {e}", root.join(rel).display()))?;
    let src = open(staged, OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| e.to_string())?;
    let entries = std::fs::read_dir(staged).map_err(|e| e.to_string())?;
    for e in entries {
        let name = e.map_err(|e| e.to_string())?.file_name();
        if renameat(&src, name.as_os_str(), &dest, name.as_os_str()).is_err() {
            // A directory (or a file in a directory's place) from an
            // earlier start: removed without following links, then again.
            let at = Path::new("/proc/self/fd")
                .join(std::os::fd::AsRawFd::as_raw_fd(&dest).to_string())
                .join(&name);
            let gone = match std::fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&at),
                Ok(_) => std::fs::remove_file(&at),
                Err(e) => Err(e),
            };
            gone.and_then(|()| {
                renameat(&src, name.as_os_str(), &dest, name.as_os_str()).map_err(Into::into)
            })
            .map_err(|e: std::io::Error| {
                format!(
                    "cannot put {} into {}: {e}",
                    name.to_string_lossy(),
                    root.join(rel).display()
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn art(source: &str, dest: &str, mode: ArtifactMode, checksum: Option<String>) -> Artifact {
        let mut options = BTreeMap::new();
        if let Some(c) = checksum {
            options.insert("checksum".to_string(), c);
        }
        Artifact {
            source: source.to_string(),
            destination: dest.to_string(),
            mode,
            options,
        }
    }

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_entry_type(tar::EntryType::Regular);
            // Written raw: `set_path` itself refuses `..`, as an attacker's
            // tool would not.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn sha256(b: &[u8]) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::digest(b);
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// An allocation dir with task `t`, a directory offered for file
    /// sources, and `files` in it.
    fn setup(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("t/local")).unwrap();
        let offered = tempfile::tempdir().unwrap();
        for (name, data) in files {
            std::fs::write(offered.path().join(name), data).unwrap();
        }
        (root, offered)
    }

    async fn fetch_one(root: &Path, offered: &Path, a: Artifact) -> Result<(), String> {
        let http = reqwest::Client::new();
        let dirs = [offered.to_path_buf()];
        let f = Fetcher {
            http: &http,
            dirs: &dirs,
        };
        fetch_all(&f, root, "t", &[a]).await
    }

    #[tokio::test]
    async fn archives_unpack_into_the_destination() {
        let tgz = tar_gz(&[("bin/app", b"#!/bin/sh\necho hi\n"), ("README", b"r")]);
        let zip = zip_of(&[("conf/app.toml", b"x = 1"), ("conf/", b"")]);
        let (root, offered) = setup(&[("app.tar.gz", tgz.clone()), ("c.zip", zip)]);
        let src = offered.path().join("app.tar.gz");
        let a = art(
            &format!("file://{}", src.display()),
            "local/app",
            ArtifactMode::Any,
            Some(format!("sha256:{}", sha256(&tgz))),
        );
        fetch_one(root.path(), offered.path(), a.clone())
            .await
            .unwrap();
        let app = root.path().join("t/local/app/bin/app");
        assert_eq!(std::fs::read(&app).unwrap(), b"#!/bin/sh\necho hi\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&app).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // Again, as a restarted task fetches: replaced, not refused.
        fetch_one(root.path(), offered.path(), a).await.unwrap();
        let src = offered.path().join("c.zip");
        let a = art(src.to_str().unwrap(), "local/", ArtifactMode::Dir, None);
        fetch_one(root.path(), offered.path(), a).await.unwrap();
        assert_eq!(
            std::fs::read(root.path().join("t/local/conf/app.toml")).unwrap(),
            b"x = 1"
        );
        assert!(
            !root.path().join(".artifacts/t").exists(),
            "staging is removed"
        );
        // mode "file" keeps an archive whole, under the destination's name.
        let src = offered.path().join("app.tar.gz");
        let a = art(
            src.to_str().unwrap(),
            "local/x.tgz",
            ArtifactMode::File,
            None,
        );
        fetch_one(root.path(), offered.path(), a).await.unwrap();
        assert_eq!(
            std::fs::read(root.path().join("t/local/x.tgz")).unwrap(),
            tgz
        );
    }

    #[tokio::test]
    async fn escapes_mismatches_and_unoffered_files_are_refused() {
        let slip_tgz = tar_gz(&[("../../escaped", b"x")]);
        let slip_zip = zip_of(&[("../escaped", b"x")]);
        let (root, offered) = setup(&[
            ("slip.tgz", slip_tgz),
            ("slip.zip", slip_zip),
            ("ok.tgz", tar_gz(&[("a", b"a")])),
        ]);
        for name in ["slip.tgz", "slip.zip"] {
            let src = offered.path().join(name);
            let a = art(src.to_str().unwrap(), "local/", ArtifactMode::Any, None);
            let err = fetch_one(root.path(), offered.path(), a).await.unwrap_err();
            assert!(err.contains("leaves the destination"), "{err}");
        }
        assert!(!root.path().join("escaped").exists());
        assert!(!root.path().join("t/escaped").exists());
        let src = offered.path().join("ok.tgz");
        let wrong = "0".repeat(64);
        let a = art(
            src.to_str().unwrap(),
            "local/",
            ArtifactMode::Any,
            Some(format!("sha256:{wrong}")),
        );
        let err = fetch_one(root.path(), offered.path(), a).await.unwrap_err();
        assert!(
            err.starts_with(&format!(
                "artifact {}: checksum mismatch, expected sha256:{wrong}, got sha256:",
                src.display()
            )),
            "{err}"
        );
        assert!(!root.path().join("t/local/a").exists());
        let a = art("/etc/hostname", "local/", ArtifactMode::Any, None);
        let err = fetch_one(root.path(), offered.path(), a).await.unwrap_err();
        assert!(err.contains("--artifact-dir"), "{err}");
        // Nor through a link in an offered directory.
        let link = offered.path().join("hostname");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        let a = art(link.to_str().unwrap(), "local/", ArtifactMode::Any, None);
        let err = fetch_one(root.path(), offered.path(), a).await.unwrap_err();
        assert!(err.contains("is not under"), "{err}");
        // A link the task put where the destination goes is not followed.
        let host = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(host.path(), root.path().join("t/local/app")).unwrap();
        let a = art(src.to_str().unwrap(), "local/app", ArtifactMode::Any, None);
        let err = fetch_one(root.path(), offered.path(), a).await.unwrap_err();
        assert!(err.contains("not followed"), "{err}");
        assert!(!host.path().join("a").exists());
    }

    #[test]
    fn digests_of_every_algorithm() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            digest(&p, "md5").unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            digest(&p, "sha1").unwrap(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert!(
            digest(&p, "sha512")
                .unwrap()
                .starts_with("ddaf35a193617aba")
        );
        assert_eq!(digest(&p, "sha256").unwrap(), sha256(b"abc"));
    }
}
