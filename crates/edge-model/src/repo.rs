//! The models one server holds: several models, each in one or more
//! numbered versions, from files named on the command line or from a
//! directory laid out like a Triton model repository
//! (`DIR/<model>/<version>/model.onnx`), loaded and unloaded while the
//! server runs.

use crate::batch::{BatchConfig, Batcher};
use crate::error::ModelError;
use crate::metrics::{Metrics, ModelMetrics};
use crate::model::Model;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Longest a model's load spends measuring which batch sizes pay off.
const BATCH_SIZING_BUDGET: Duration = Duration::from_millis(300);

/// The file Triton's repository layout keeps an ONNX model version in.
pub const REPOSITORY_FILE: &str = "model.onnx";

/// One model version and the file it is loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    pub name: String,
    pub version: u64,
    pub path: PathBuf,
}

impl ModelSource {
    /// A `--model` argument: `NAME=PATH`, `NAME:VERSION=PATH`, or a bare
    /// `PATH` served as `default_name` (the file's stem when `None`), version 1.
    pub fn parse_arg(arg: &str, default_name: Option<&str>) -> Result<ModelSource, String> {
        if let Some((left, path)) = arg.split_once('=') {
            let (name, version) = match left.split_once(':') {
                Some((n, v)) => {
                    let v = v.parse::<u64>().ok().filter(|v| *v > 0).ok_or_else(|| {
                        format!("{arg:?}: version {v:?} is not a positive whole number")
                    })?;
                    (n, v)
                }
                None => (left, 1),
            };
            if !valid_name(name) {
                return Err(format!(
                    "{arg:?}: {name:?} is not a model name (letters, digits, '_', '-' and '.')"
                ));
            }
            if path.is_empty() {
                return Err(format!("{arg:?}: no path after '='"));
            }
            return Ok(ModelSource {
                name: name.to_string(),
                version,
                path: PathBuf::from(path),
            });
        }
        let path = PathBuf::from(arg);
        let name = match default_name {
            Some(n) => n.to_string(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if !valid_name(&name) {
            return Err(format!(
                "{arg:?}: {name:?} is not a model name; write NAME=PATH"
            ));
        }
        Ok(ModelSource {
            name,
            version: 1,
            path,
        })
    }
}

/// Where a server's models come from and how it batches them.
#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    pub files: Vec<ModelSource>,
    pub directory: Option<PathBuf>,
    /// Most rows stacked into one execution; 1 turns batching off.
    pub max_batch_size: usize,
    /// Longest a request waits for others to join its batch.
    pub max_delay: Duration,
    /// Model executions at once, per model version.
    pub workers: usize,
    /// What runs the models.
    pub backend: crate::Backend,
}

/// A model version ready to answer requests.
#[derive(Debug)]
pub struct Served {
    pub model: Arc<Model>,
    pub version: u64,
    /// The rows one execution stacks; 1 when the model has no batch dimension.
    pub max_batch_size: usize,
    pub batcher: Batcher,
    pub metrics: ModelMetrics,
}

/// One input or output of a model's configuration: dims leave out the
/// batch dimension when the model batches.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigTensor {
    pub name: String,
    pub datatype: crate::model::DataType,
    pub dims: Vec<i64>,
}

/// A model version's configuration, in the terms of Triton's model config:
/// `max_batch_size` is 0 for a model without a batch dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    pub max_batch_size: usize,
    pub input: Vec<ConfigTensor>,
    pub output: Vec<ConfigTensor>,
}

impl Served {
    pub fn config(&self) -> ModelConfig {
        let m = &self.model;
        let (max_batch_size, skip) = if m.batchable {
            (self.max_batch_size, 1)
        } else {
            (0, 0)
        };
        let tensors = |infos: &[crate::model::TensorInfo]| {
            infos
                .iter()
                .map(|t| ConfigTensor {
                    name: t.name.clone(),
                    datatype: t.datatype,
                    dims: t.shape.iter().skip(skip).copied().collect(),
                })
                .collect()
        };
        ModelConfig {
            name: m.name.clone(),
            max_batch_size,
            input: tensors(&m.inputs),
            output: tensors(&m.outputs),
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    versions: BTreeMap<u64, Arc<Served>>,
    /// Why the model has no version serving (unloaded, a failed load).
    reason: Option<String>,
}

/// A line of `/v2/repository/index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexEntry {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

#[derive(Debug)]
pub struct Repository {
    cfg: RepositoryConfig,
    metrics: Arc<Metrics>,
    models: RwLock<BTreeMap<String, Entry>>,
    /// One load or unload at a time, so two loads of a model never race.
    changing: tokio::sync::Mutex<()>,
}

pub use edge_spec::model::valid_model_name as valid_name;

impl Repository {
    /// Finds and loads every model version, failing on the first that
    /// cannot load: a server never starts with part of its models.
    pub async fn open(cfg: RepositoryConfig) -> Result<Repository, ModelError> {
        let metrics = Arc::new(Metrics::new(cfg.max_batch_size));
        let repo = Repository {
            cfg,
            metrics,
            models: RwLock::new(BTreeMap::new()),
            changing: tokio::sync::Mutex::new(()),
        };
        let sources = repo.sources(None)?;
        if sources.is_empty() {
            return Err(ModelError::Repository(match &repo.cfg.directory {
                Some(d) => format!("model repository {} has no models", d.display()),
                None => "no models to serve".to_string(),
            }));
        }
        let mut models: BTreeMap<String, Entry> = BTreeMap::new();
        for s in sources {
            let served = repo.load_one(s.clone()).await?;
            models
                .entry(s.name)
                .or_default()
                .versions
                .insert(s.version, served);
        }
        *repo.write() = models;
        Ok(repo)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.models.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The model version a request names; the newest version when it names none.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<Served>, ModelError> {
        let models = self.read();
        let Some(entry) = models.get(name) else {
            return Err(ModelError::ModelNotFound(format!(
                "model {name:?} not found; this server serves {}",
                names(&models)
            )));
        };
        let found = match version {
            None => entry.versions.values().next_back(),
            Some(v) => v.parse::<u64>().ok().and_then(|v| entry.versions.get(&v)),
        };
        match (found, version) {
            (Some(s), _) => Ok(s.clone()),
            (None, _) if entry.versions.is_empty() => Err(ModelError::ModelNotFound(format!(
                "model {name:?} is not loaded ({}); POST /v2/repository/models/{name}/load loads it",
                entry.reason.as_deref().unwrap_or("unloaded")
            ))),
            (None, v) => Err(ModelError::ModelNotFound(format!(
                "model {name:?} has no version {:?}; it has {}",
                v.unwrap_or_default(),
                entry
                    .versions
                    .keys()
                    .map(|v| format!("{:?}", v.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The versions of `name` that are serving, oldest first.
    pub fn versions(&self, name: &str) -> Vec<u64> {
        self.read()
            .get(name)
            .map(|e| e.versions.keys().copied().collect())
            .unwrap_or_default()
    }

    /// True for a model of this repository with no version serving
    /// (unloaded, a failed load, or in the directory and never loaded).
    pub fn is_unloaded(&self, name: &str) -> bool {
        match self.read().get(name) {
            Some(e) => e.versions.is_empty(),
            None => self.sources(Some(name)).is_ok_and(|s| !s.is_empty()),
        }
    }

    /// Every model the server knows, loaded or not, and every model in its
    /// directory not loaded yet; with `ready_only`, the versions serving.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        // The directory is read before the lock is taken, so a slow disk
        // never holds up loads, unloads or lookups.
        let found = if ready_only {
            Vec::new()
        } else {
            self.sources(None).unwrap_or_default()
        };
        let mut out = Vec::new();
        let models = self.read();
        for (name, entry) in models.iter() {
            if entry.versions.is_empty() && !ready_only {
                out.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    state: "UNAVAILABLE",
                    reason: entry.reason.clone().unwrap_or_default(),
                });
            }
            for v in entry.versions.keys() {
                out.push(IndexEntry {
                    name: name.clone(),
                    version: Some(v.to_string()),
                    state: "READY",
                    reason: String::new(),
                });
            }
        }
        let mut new: Vec<&ModelSource> = found
            .iter()
            .filter(|s| !models.contains_key(&s.name))
            .collect();
        new.dedup_by(|a, b| a.name == b.name);
        out.extend(new.into_iter().map(|s| IndexEntry {
            name: s.name.clone(),
            version: None,
            state: "UNAVAILABLE",
            reason: "not loaded".to_string(),
        }));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// (Re)loads every version of `name` from its sources. The versions
    /// that were serving go on serving until all new ones have loaded;
    /// when one fails, they stay.
    pub async fn load(&self, name: &str) -> Result<Vec<u64>, ModelError> {
        let _one = self.changing.lock().await;
        let sources = self.sources(Some(name))?;
        if sources.is_empty() {
            return Err(ModelError::ModelNotFound(format!(
                "no model {name:?} in this server's repository"
            )));
        }
        let mut versions = BTreeMap::new();
        for s in sources {
            let version = s.version;
            match self.load_one(s).await {
                Ok(served) => {
                    versions.insert(version, served);
                }
                Err(e) => {
                    let mut models = self.write();
                    let entry = models.entry(name.to_string()).or_default();
                    if entry.versions.is_empty() {
                        entry.reason = Some(format!("load failed: {e}"));
                    }
                    return Err(e);
                }
            }
        }
        let loaded = versions.keys().copied().collect();
        self.write().insert(
            name.to_string(),
            Entry {
                versions,
                reason: None,
            },
        );
        Ok(loaded)
    }

    /// Stops serving every version of `name`; requests already queued are
    /// answered first.
    pub async fn unload(&self, name: &str) -> Result<(), ModelError> {
        let _one = self.changing.lock().await;
        let mut models = self.write();
        let Some(entry) = models.get_mut(name) else {
            return Err(ModelError::ModelNotFound(format!(
                "model {name:?} not found; this server serves {}",
                names(&models)
            )));
        };
        entry.versions.clear();
        entry.reason = Some("unloaded".to_string());
        Ok(())
    }

    async fn load_one(&self, s: ModelSource) -> Result<Arc<Served>, ModelError> {
        let (path, name, max) = (s.path.clone(), s.name.clone(), self.cfg.max_batch_size);
        let (workers, backend) = (self.cfg.workers, self.cfg.backend.clone());
        let (model, max_batch_size) = tokio::task::spawn_blocking(move || {
            let model = Model::load_with(&path, &name, &backend)?;
            let limit = model.batch_limit(max, workers, BATCH_SIZING_BUDGET);
            Ok::<_, ModelError>((model, limit))
        })
        .await
        .map_err(|e| ModelError::Load {
            path: s.path.clone(),
            reason: e.to_string(),
        })??;
        if model.batchable && max_batch_size < max {
            tracing::info!(
                model = %s.name,
                version = s.version,
                "batches of at most {max_batch_size} rows: larger ones cost more per row"
            );
        }
        let model = Arc::new(model);
        let metrics = self.metrics.model(&s.name, s.version);
        let batcher = Batcher::start(
            model.clone(),
            BatchConfig {
                max_batch_size,
                max_delay: self.cfg.max_delay,
                workers: self.cfg.workers,
            },
            metrics.clone(),
        );
        Ok(Arc::new(Served {
            model,
            version: s.version,
            max_batch_size,
            batcher,
            metrics,
        }))
    }

    /// The model versions to load: the named files, then the directory's,
    /// all of them or those of model `only`.
    fn sources(&self, only: Option<&str>) -> Result<Vec<ModelSource>, ModelError> {
        let mut out: Vec<ModelSource> = self
            .cfg
            .files
            .iter()
            .filter(|s| only.is_none_or(|n| n == s.name))
            .cloned()
            .collect();
        if let Some(dir) = &self.cfg.directory {
            for s in scan(dir, only)? {
                if out
                    .iter()
                    .any(|f| f.name == s.name && f.version == s.version)
                {
                    return Err(ModelError::Repository(format!(
                        "model {:?} version {} is both given as a file and in {}",
                        s.name,
                        s.version,
                        dir.display()
                    )));
                }
                out.push(s);
            }
        }
        out.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        Ok(out)
    }
}

fn names(models: &BTreeMap<String, Entry>) -> String {
    models
        .keys()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The refusal of a load or unload parameter other than `unload_dependents`.
pub(crate) fn unsupported_parameter(key: &str) -> String {
    format!(
        "load parameter {key:?} is not supported: edge loads a model from the files or directory it was started with"
    )
}

/// The model versions in a Triton-style repository: `<model>/<version>/model.onnx`,
/// versions being positive whole numbers. Hidden entries are skipped;
/// anything else out of place is an error naming it, so a typo never
/// leaves a model out in silence.
pub fn scan(dir: &Path, only: Option<&str>) -> Result<Vec<ModelSource>, ModelError> {
    let bad = |reason: String| {
        ModelError::Repository(format!("model repository {}: {reason}", dir.display()))
    };
    let entries = std::fs::read_dir(dir).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || only.is_some_and(|o| o != name) {
            continue;
        }
        let model_dir = entry.path();
        if !model_dir.is_dir() {
            continue;
        }
        if !valid_name(&name) {
            return Err(bad(format!(
                "{name:?} is not a model name (letters, digits, '_', '-' and '.')"
            )));
        }
        let versions = std::fs::read_dir(&model_dir).map_err(|e| bad(format!("{name}: {e}")))?;
        let before = out.len();
        for v in versions {
            let v = v.map_err(|e| bad(format!("{name}: {e}")))?;
            let vname = v.file_name().to_string_lossy().into_owned();
            if vname.starts_with('.') || !v.path().is_dir() {
                continue;
            }
            let version = vname
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    bad(format!(
                        "{name}/{vname}: a version directory is a positive whole number"
                    ))
                })?;
            let path = v.path().join(REPOSITORY_FILE);
            if !path.is_file() {
                return Err(bad(format!("{name}/{vname} has no {REPOSITORY_FILE}")));
            }
            out.push(ModelSource {
                name: name.clone(),
                version,
                path,
            });
        }
        if out.len() == before {
            return Err(bad(format!(
                "{name} has no version directory ({name}/1/{REPOSITORY_FILE})"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/model/fixtures")
            .join(name)
    }

    fn cfg(files: Vec<ModelSource>, directory: Option<PathBuf>) -> RepositoryConfig {
        RepositoryConfig {
            files,
            directory,
            max_batch_size: 8,
            max_delay: Duration::from_millis(1),
            workers: 1,
            backend: crate::Backend::Tract,
        }
    }

    fn put(dir: &Path, name: &str, version: &str, from: &str) {
        let d = dir.join(name).join(version);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(fixture(from), d.join(REPOSITORY_FILE)).unwrap();
    }

    #[test]
    fn model_arguments() {
        let p = |a: &str| ModelSource::parse_arg(a, None);
        assert_eq!(
            p("iris:2=/m/iris.onnx").unwrap(),
            ModelSource {
                name: "iris".into(),
                version: 2,
                path: "/m/iris.onnx".into()
            }
        );
        assert_eq!(p("mlp=m.onnx").unwrap().version, 1);
        assert_eq!(p("models/iris.onnx").unwrap().name, "iris");
        assert_eq!(
            ModelSource::parse_arg("x.onnx", Some("named"))
                .unwrap()
                .name,
            "named"
        );
        for (bad, why) in [
            ("iris:0=m.onnx", "positive whole number"),
            ("iris:v2=m.onnx", "positive whole number"),
            ("../x=m.onnx", "not a model name"),
            ("iris=", "no path"),
            ("/", "write NAME=PATH"),
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_argument_parses_or_fails_cleanly(arg in ".{0,40}") {
            if let Ok(s) = ModelSource::parse_arg(&arg, None) {
                proptest::prop_assert!(valid_name(&s.name));
                proptest::prop_assert!(s.version > 0);
            }
        }
    }

    #[tokio::test]
    async fn a_directory_serves_every_model_and_version() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), "iris", "1", "iris.onnx");
        put(dir.path(), "iris", "2", "iris.onnx");
        put(dir.path(), "mlp", "7", "mlp.onnx");
        let repo = Repository::open(cfg(vec![], Some(dir.path().into())))
            .await
            .unwrap();
        assert_eq!(repo.versions("iris"), [1, 2]);
        assert_eq!(repo.get("iris", None).unwrap().version, 2);
        assert_eq!(repo.get("iris", Some("1")).unwrap().version, 1);
        assert_eq!(repo.get("mlp", None).unwrap().max_batch_size, 8);
        let e = repo.get("iris", Some("3")).unwrap_err().to_string();
        assert!(
            e.contains("no version \"3\"") && e.contains("\"1\", \"2\""),
            "{e}"
        );
        let e = repo.get("nope", None).unwrap_err().to_string();
        assert!(e.contains("\"iris\", \"mlp\""), "{e}");
    }

    #[tokio::test]
    async fn unload_and_load_change_what_is_served() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), "iris", "1", "iris.onnx");
        let repo = Repository::open(cfg(vec![], Some(dir.path().into())))
            .await
            .unwrap();
        repo.unload("iris").await.unwrap();
        let e = repo.get("iris", None).unwrap_err().to_string();
        assert!(e.contains("not loaded (unloaded)"), "{e}");
        assert_eq!(
            repo.index(false),
            [IndexEntry {
                name: "iris".into(),
                version: None,
                state: "UNAVAILABLE",
                reason: "unloaded".into(),
            }]
        );
        // A model added to the directory is listed, then loaded on request.
        put(dir.path(), "mlp", "1", "mlp.onnx");
        assert!(
            repo.index(false)
                .iter()
                .any(|e| e.name == "mlp" && e.reason == "not loaded")
        );
        assert_eq!(repo.load("mlp").await.unwrap(), [1]);
        assert_eq!(repo.load("iris").await.unwrap(), [1]);
        assert_eq!(
            repo.index(false)
                .iter()
                .filter(|e| e.state == "READY")
                .count(),
            2
        );
        let e = repo.load("ghost").await.unwrap_err().to_string();
        assert!(e.contains("no model \"ghost\""), "{e}");
    }

    #[tokio::test]
    async fn a_failed_reload_keeps_the_versions_serving() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), "iris", "1", "iris.onnx");
        let repo = Repository::open(cfg(vec![], Some(dir.path().into())))
            .await
            .unwrap();
        std::fs::write(dir.path().join("iris/1").join(REPOSITORY_FILE), b"junk").unwrap();
        let e = repo.load("iris").await.unwrap_err().to_string();
        assert!(e.contains("not an ONNX model"), "{e}");
        assert_eq!(repo.get("iris", None).unwrap().version, 1);
    }

    #[tokio::test]
    async fn files_and_bad_layouts() {
        let files = vec![
            ModelSource {
                name: "a".into(),
                version: 1,
                path: fixture("iris.onnx"),
            },
            ModelSource {
                name: "a".into(),
                version: 2,
                path: fixture("mlp.onnx"),
            },
        ];
        let repo = Repository::open(cfg(files, None)).await.unwrap();
        assert_eq!(repo.versions("a"), [1, 2]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("m/latest")).unwrap();
        let e = Repository::open(cfg(vec![], Some(dir.path().into())))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("m/latest: a version directory"), "{e}");
        std::fs::remove_dir(dir.path().join("m/latest")).unwrap();
        std::fs::create_dir_all(dir.path().join("m/1")).unwrap();
        let e = Repository::open(cfg(vec![], Some(dir.path().into())))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("m/1 has no model.onnx"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = Repository::open(cfg(vec![], Some(empty.path().into())))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no models"), "{e}");
    }
}
