//! A task's `artifact` blocks (Nomad's): files the agent fetches into the
//! task's directory before the task starts, unpacked when they are
//! archives and checked against a checksum when the job gives one. This
//! is the pure half: the block, its bounds and its checks; the agent
//! fetches (`edge-agent`'s `artifact.rs`).
//!
//! Nomad's go-getter is followed loosely: `http://`, `https://` and
//! `file://` sources (a bare absolute path is a `file://` one); an archive
//! is told by the source's extension (`.tar`, `.tar.gz`, `.tgz`, `.zip`)
//! unless `options { archive = "..." }` names its kind or `"false"` keeps
//! it whole; `options { checksum = "sha256:..." }` (also sha512, sha1,
//! md5) is checked before anything is unpacked. Other go-getter options
//! (credentials, S3, git) are refused: edge does not fetch those.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path};

/// Artifacts of one task.
pub const MAX_ARTIFACTS: usize = 32;

/// Bytes of one artifact as fetched, and again of what it unpacks to: a
/// GiB, more than any binary or bundle a task is given this way, and a
/// bound on what a job can make the node download or write.
pub const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// Files and directories one archive may unpack to.
pub const MAX_ARCHIVE_ENTRIES: usize = 100_000;

/// How long fetching and unpacking one artifact may take.
pub const ARTIFACT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// What the source is taken as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactMode {
    /// An archive is unpacked into `destination`; any other file is put
    /// there under its own name.
    #[default]
    Any,
    /// `destination` is the file's own path; nothing is unpacked.
    File,
    /// The source must be an archive, unpacked into `destination`.
    Dir,
}

/// A task's `artifact { source destination mode options }` block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// `https://...`, `http://...`, `file:///...` or an absolute path on
    /// the node (under a directory the agent was given with
    /// `--artifact-dir`).
    pub source: String,
    /// Relative to the task's directory; `local/` when unset.
    #[serde(default = "default_destination")]
    pub destination: String,
    #[serde(default)]
    pub mode: ArtifactMode,
    /// go-getter's options: `checksum` (`TYPE:HEX`) and `archive`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

fn default_destination() -> String {
    "local/".to_string()
}

/// How an artifact's bytes are unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    Zip,
}

/// A digest an artifact must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// `sha256`, `sha512`, `sha1` or `md5`.
    pub algorithm: &'static str,
    /// Lowercase hex.
    pub hex: String,
}

const ALGORITHMS: &[(&str, usize)] = &[("md5", 32), ("sha1", 40), ("sha256", 64), ("sha512", 128)];
const OPTIONS: &[&str] = &["checksum", "archive"];

/// Where an artifact comes from, once its source is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source<'a> {
    /// An `http://` or `https://` URL, as written.
    Http(&'a str),
    /// An absolute path on the node.
    File(&'a str),
}

impl Artifact {
    pub fn source(&self) -> Result<Source<'_>, String> {
        let s = self.source.trim();
        if s.starts_with("https://") || s.starts_with("http://") {
            return Ok(Source::Http(s));
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.starts_with('/') {
            if Path::new(path)
                .components()
                .any(|c| c == Component::ParentDir)
            {
                return Err(format!("source {path:?} must not contain `..`"));
            }
            return Ok(Source::File(path));
        }
        Err(format!(
            "source {:?} is not an http://, https:// or file:// URL or an absolute path; edge fetches no other kind (git, s3, gcs, hg)",
            crate::validate::shorten(s)
        ))
    }

    /// The checksum the job asks for, if any.
    pub fn checksum(&self) -> Result<Option<Checksum>, String> {
        let Some(v) = self.options.get("checksum") else {
            return Ok(None);
        };
        let (algo, hex) = v
            .split_once(':')
            .ok_or_else(|| format!("checksum {v:?} is not TYPE:HEX, e.g. \"sha256:...\""))?;
        let Some(&(name, len)) = ALGORITHMS.iter().find(|(a, _)| *a == algo) else {
            let known: Vec<&str> = ALGORITHMS.iter().map(|(a, _)| *a).collect();
            return Err(format!(
                "checksum type {algo:?} is not one of {}",
                known.join(", ")
            ));
        };
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("a {name} checksum is {len} hex digits"));
        }
        Ok(Some(Checksum {
            algorithm: name,
            hex: hex.to_ascii_lowercase(),
        }))
    }

    /// How the artifact is unpacked: `None` keeps it as one file.
    pub fn archive(&self) -> Result<Option<ArchiveKind>, String> {
        if self.mode == ArtifactMode::File {
            return Ok(None);
        }
        let kind = match self.options.get("archive").map(String::as_str) {
            Some("false") => None,
            Some("tar") => Some(ArchiveKind::Tar),
            Some("tar.gz" | "tgz") => Some(ArchiveKind::TarGz),
            Some("zip") => Some(ArchiveKind::Zip),
            Some(other) => {
                return Err(format!(
                    "archive {other:?} is not one of tar, tar.gz, tgz, zip, false"
                ));
            }
            None => archive_of(self.file_name().as_deref().unwrap_or_default()),
        };
        if kind.is_none() && self.mode == ArtifactMode::Dir {
            return Err(
                "mode \"dir\" unpacks an archive, and the source is none (.tar, .tar.gz, .tgz or .zip, or options { archive = ... })"
                    .to_string(),
            );
        }
        Ok(kind)
    }

    /// The last segment of the source's path, query left out: the name a
    /// file that is not unpacked gets in `destination`.
    pub fn file_name(&self) -> Option<String> {
        let s = self.source.trim();
        let s = s.split(['?', '#']).next().unwrap_or(s);
        let name = s.rsplit('/').next()?;
        (!name.is_empty() && name != "." && name != ".." && !name.contains('\0'))
            .then(|| name.to_string())
    }

    /// The destination as a path relative to the task's directory, every
    /// component a plain name (`.` dropped); empty is the task dir itself.
    pub fn destination_path(&self) -> Result<Vec<String>, String> {
        relative_path(&self.destination)
            .ok_or_else(|| {
                format!(
                    "destination {:?} must be a path inside the task's directory (relative, no `..`)",
                    crate::validate::shorten(&self.destination)
                )
            })
            .and_then(|parts| {
                if self.mode == ArtifactMode::File && parts.is_empty() {
                    Err("mode \"file\" needs a file name as its destination".to_string())
                } else {
                    Ok(parts)
                }
            })
    }

    /// Every problem of the block, as (field under the block, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = self.source() {
            out.push(("source", e));
        }
        if let Err(e) = self.destination_path() {
            out.push(("destination", e));
        }
        for key in self.options.keys() {
            if !OPTIONS.contains(&key.as_str()) {
                out.push((
                    "options",
                    format!(
                        "option {:?} is not taken: edge reads only {}",
                        crate::validate::shorten(key),
                        OPTIONS.join(", ")
                    ),
                ));
            }
        }
        if let Err(e) = self.checksum() {
            out.push(("options.checksum", e));
        }
        if let Err(e) = self.archive() {
            out.push(("options.archive", e));
        }
        if self.mode == ArtifactMode::Any
            && self.archive().is_ok_and(|k| k.is_none())
            && self.file_name().is_none()
        {
            out.push((
                "source",
                "the source's path ends in no file name to give the file: use mode \"file\" with a destination file".to_string(),
            ));
        }
        out
    }
}

/// The archive kind a file name says it is.
pub fn archive_of(name: &str) -> Option<ArchiveKind> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
        Some(ArchiveKind::TarGz)
    } else if lower.ends_with(".tar") {
        Some(ArchiveKind::Tar)
    } else if lower.ends_with(".zip") {
        Some(ArchiveKind::Zip)
    } else {
        None
    }
}

/// `path` split into plain components when it is relative and never
/// climbs out (`.` is dropped); `None` otherwise.
pub fn relative_path(path: &str) -> Option<Vec<String>> {
    if path.contains('\0') {
        return None;
    }
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any block is checked without panicking, and a destination it
        /// takes never leaves the task's directory.
        #[test]
        fn never_panics_and_stays_inside(
            source in "\\PC{0,40}",
            dest in "[a-z./\\\\]{0,20}",
            checksum in "\\PC{0,80}",
            archive in "\\PC{0,8}",
        ) {
            let mut options = BTreeMap::new();
            options.insert("checksum".to_string(), checksum);
            options.insert("archive".to_string(), archive);
            for mode in [ArtifactMode::Any, ArtifactMode::File, ArtifactMode::Dir] {
                let a = Artifact { source: source.clone(), destination: dest.clone(), mode, options: options.clone() };
                let _ = a.problems();
                if let Ok(parts) = a.destination_path() {
                    let mut p = std::path::PathBuf::from("/task");
                    p.extend(&parts);
                    prop_assert!(p.starts_with("/task"));
                    prop_assert!(parts.iter().all(|c| c != ".." && c != "." && !c.is_empty() && !c.contains('/')));
                }
            }
        }
    }

    fn art(source: &str, dest: &str, mode: ArtifactMode, opts: &[(&str, &str)]) -> Artifact {
        Artifact {
            source: source.to_string(),
            destination: dest.to_string(),
            mode,
            options: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn problems_name_their_field() {
        use ArtifactMode::*;
        let sha = "a".repeat(64);
        let checksum = format!("sha256:{sha}");
        let cases: &[(Artifact, &[&str])] = &[
            (art("https://x/app.tar.gz", "local/", Any, &[]), &[]),
            (
                art(
                    "https://x/app",
                    "local/bin/app",
                    File,
                    &[("checksum", &checksum)],
                ),
                &[],
            ),
            (art("/srv/files/app.zip", "local", Dir, &[]), &[]),
            (art("file:///srv/a.tgz", ".", Any, &[]), &[]),
            (art("git::https://x/r.git", "local/", Any, &[]), &["source"]),
            (art("relative/a.tgz", "local/", Any, &[]), &["source"]),
            (art("/srv/../etc/shadow", "local/", Any, &[]), &["source"]),
            (
                art("https://x/a.tgz", "../../etc", Any, &[]),
                &["destination"],
            ),
            (art("https://x/a.tgz", "/etc", Any, &[]), &["destination"]),
            (art("https://x/a", ".", File, &[]), &["destination"]),
            (art("https://x/a", "local/", Dir, &[]), &["options.archive"]),
            (
                art(
                    "https://x/a.tgz",
                    "local/",
                    Any,
                    &[("checksum", "sha256:zz")],
                ),
                &["options.checksum"],
            ),
            (
                art("https://x/a.tgz", "local/", Any, &[("checksum", "crc:00")]),
                &["options.checksum"],
            ),
            (
                art(
                    "https://x/a.tgz",
                    "local/",
                    Any,
                    &[("aws_access_key_id", "k")],
                ),
                &["options"],
            ),
            (
                art("https://x/a", "local/", Any, &[("archive", "rar")]),
                &["options.archive"],
            ),
            (art("https://x/", "local/", Any, &[]), &["source"]),
        ];
        for (a, want) in cases {
            let got: Vec<&str> = a.problems().iter().map(|(f, _)| *f).collect();
            assert_eq!(&got, want, "{a:?}: {:?}", a.problems());
        }
    }

    #[test]
    fn archives_checksums_and_names() {
        let a = art(
            "https://x/dl/app-1.2.TGZ?token=abc",
            "local/",
            ArtifactMode::Any,
            &[("checksum", &format!("SHA256:{}", "AB".repeat(32)))],
        );
        assert_eq!(a.archive(), Ok(Some(ArchiveKind::TarGz)));
        assert_eq!(a.file_name().as_deref(), Some("app-1.2.TGZ"));
        assert!(
            a.checksum().is_err(),
            "the type is lowercase, as go-getter's"
        );
        let a = art(
            "https://x/a.zip",
            "local/",
            ArtifactMode::Any,
            &[("checksum", &format!("md5:{}", "AB".repeat(16)))],
        );
        let c = a.checksum().unwrap().unwrap();
        assert_eq!((c.algorithm, c.hex.as_str()), ("md5", &*"ab".repeat(16)));
        assert_eq!(a.archive(), Ok(Some(ArchiveKind::Zip)));
        let mut keep = a.clone();
        keep.options.insert("archive".into(), "false".into());
        assert_eq!(keep.archive(), Ok(None));
        keep.mode = ArtifactMode::File;
        keep.options.clear();
        assert_eq!(keep.archive(), Ok(None));
        assert_eq!(
            relative_path("./local//a/"),
            Some(vec!["local".into(), "a".into()])
        );
        assert_eq!(relative_path("local/../../x"), None);
    }
}
