//! The onnxruntime backend: ONNX Runtime's shared library, opened at run
//! time, runs a model in place of tract. Tensors stay tract's on both sides
//! (the protocol code knows no other), and cross into ONNX Runtime as views.

use crate::error::ModelError;
use crate::model::{DataType, TensorInfo};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tract_onnx::prelude::{DatumType, Tensor, f16};

/// The names tried in the dynamic loader's search path when no library is
/// given: the development link, then the runtime name a package installs.
const LIBRARY_NAMES: [&str; 2] = ["libonnxruntime.so", "libonnxruntime.so.1"];

/// The environment variable naming the library, as `--onnxruntime-lib` does.
pub const LIBRARY_ENV: &str = "EDGE_ONNXRUNTIME_LIB";

/// Opened once per process: a library cannot be unloaded or swapped, so the
/// first one that opens is the one every model uses. A failure is not kept:
/// the next model tries again (the library may have been installed since).
/// Beside it, the path it was opened by.
static RUNTIME: OnceLock<(Environment, PathBuf)> = OnceLock::new();
static OPENING: Mutex<()> = Mutex::new(());

/// The ONNX Runtime environment, opening the library on first use from
/// `library`, else `$EDGE_ONNXRUNTIME_LIB`, else the loader's search path.
fn runtime(library: Option<&Path>) -> Result<&'static (Environment, PathBuf), ModelError> {
    if let Some(opened) = RUNTIME.get() {
        return Ok(opened);
    }
    let _one = OPENING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(opened) = RUNTIME.get() {
        return Ok(opened);
    }
    let opened = open(library).map_err(ModelError::BackendUnavailable)?;
    Ok(RUNTIME.get_or_init(|| opened))
}

/// ONNX Runtime as this process finds it: opened as a model would open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// As the library says, e.g. `1.32.0`.
    pub version: String,
    /// The path (or loader name) it was opened by.
    pub library: PathBuf,
}

/// Opens ONNX Runtime as [`runtime`] does and asks the library its version:
/// what `edge model backends` reports and the model driver fingerprints.
pub fn runtime_info(library: Option<&Path>) -> Result<RuntimeInfo, ModelError> {
    let (_, path) = runtime(library)?;
    let version = version_of(path).map_err(ModelError::BackendUnavailable)?;
    Ok(RuntimeInfo {
        version,
        library: path.clone(),
    })
}

/// ONNX Runtime's own version string; ort checks it on open but keeps it.
fn version_of(path: &Path) -> Result<String, String> {
    let failed =
        |e: &dyn std::fmt::Display| format!("reading the version of {}: {e}", path.display());
    // SAFETY: ort opened this library in this process already, so opening it
    // again only takes another reference and runs no initializers.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| failed(&e))?;
    // SAFETY: `OrtGetApiBase` is ONNX Runtime's C entry point, with this
    // signature in every version ort supports.
    let get: libloading::Symbol<'_, unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
        unsafe { lib.get(b"OrtGetApiBase") }.map_err(|e| failed(&e))?;
    // SAFETY: the entry point takes nothing and returns a static table.
    let base = unsafe { get() };
    if base.is_null() {
        return Err(failed(&"OrtGetApiBase returned nothing"));
    }
    // SAFETY: `base` is the library's static, non-null table; the version
    // string it returns is static and NUL-terminated (or null, checked).
    let text = unsafe { ((*base).GetVersionString)() };
    if text.is_null() {
        return Err(failed(&"no version string"));
    }
    // SAFETY: as above: a static NUL-terminated string.
    let text = unsafe { std::ffi::CStr::from_ptr(text) };
    Ok(text.to_string_lossy().into_owned())
}

/// The library `$EDGE_ONNXRUNTIME_LIB` names, if it names one: what a
/// server opens without `--onnxruntime-lib`, and what the model driver
/// hands its tasks.
pub(crate) fn library_setting() -> Option<std::ffi::OsString> {
    std::env::var_os(LIBRARY_ENV).filter(|v| !v.is_empty())
}

fn open(library: Option<&Path>) -> Result<(Environment, PathBuf), String> {
    let candidates: Vec<PathBuf> = match library
        .map(Path::to_path_buf)
        .or_else(|| library_setting().map(PathBuf::from))
    {
        Some(path) => vec![path],
        None => LIBRARY_NAMES.iter().map(PathBuf::from).collect(),
    };
    let mut failures = Vec::new();
    for path in &candidates {
        match ort::init_from(path) {
            Ok(builder) => {
                return builder
                    .with_name("edge")
                    .build()
                    .map(|env| (env, path.clone()))
                    .map_err(|e| format!("starting ONNX Runtime from {}: {e}", path.display()));
            }
            // ort says only "dlopen failed"; the loader's own words (no
            // such file, permission denied, a missing dependency) follow.
            Err(e) => failures.push(
                match &e {
                    ort::LoadDynamicError::Dlopen { error, .. } => {
                        std::error::Error::source(error).map(|why| format!("{e} ({why})"))
                    }
                    _ => None,
                }
                .unwrap_or_else(|| e.to_string()),
            ),
        }
    }
    Err(format!(
        "{}; install ONNX Runtime's shared library (1.17 or newer) or name it with --onnxruntime-lib or ${LIBRARY_ENV}",
        failures.join("; ")
    ))
}

/// A model in ONNX Runtime. A session runs one call at a time (ort's rule:
/// some of ONNX Runtime's allocators are not thread-safe), so idle sessions
/// wait in a pool and a call finding none builds another: there are as many
/// as calls ever ran at once, which is the server's worker count.
pub(crate) struct OrtModel {
    bytes: Arc<[u8]>,
    environment: &'static Environment,
    idle: Mutex<Vec<Session>>,
    outputs: Vec<TensorElementType>,
}

impl std::fmt::Debug for OrtModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtModel")
            .field("bytes", &self.bytes.len())
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// What loading found: the model, its inputs and outputs as the protocol
/// reports them, each input's element type, and whether requests can be
/// stacked: an open first dimension of one name (where ONNX Runtime names
/// it) on every input and output.
pub(crate) struct Loaded {
    pub model: OrtModel,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    pub input_types: Vec<DatumType>,
    pub batchable: bool,
}

impl OrtModel {
    pub(crate) fn load(
        path: &Path,
        bytes: Vec<u8>,
        library: Option<&Path>,
    ) -> Result<Loaded, ModelError> {
        let (environment, _) = runtime(library)?;
        let reason = |reason: String| ModelError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let bytes: Arc<[u8]> = bytes.into();
        let session = new_session(environment, &bytes).map_err(reason)?;
        let describe = |outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|o| outlet(o.name(), o.dtype()).map_err(reason))
                .collect::<Result<Vec<_>, _>>()
        };
        let inputs = describe(session.inputs())?;
        let outputs = describe(session.outputs())?;
        let all = || inputs.iter().chain(&outputs);
        let mut named = all().filter_map(|o| o.batch_symbol.as_deref());
        let one_name = match named.next() {
            Some(first) => named.all(|s| s == first),
            None => true,
        };
        let batchable =
            !inputs.is_empty() && all().all(|o| o.info.shape.first() == Some(&-1)) && one_name;
        Ok(Loaded {
            model: OrtModel {
                bytes,
                environment,
                idle: Mutex::new(vec![session]),
                outputs: outputs.iter().map(|o| o.ty).collect(),
            },
            input_types: inputs.iter().map(|i| i.datum).collect(),
            inputs: inputs.into_iter().map(|i| i.info).collect(),
            outputs: outputs.into_iter().map(|o| o.info).collect(),
            batchable,
        })
    }

    pub(crate) fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, ModelError> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut session = match taken {
            Some(s) => s,
            None => new_session(self.environment, &self.bytes).map_err(ModelError::Inference)?,
        };
        let result = self.run_on(&mut session, inputs);
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
        result
    }

    fn run_on(&self, session: &mut Session, inputs: &[Tensor]) -> Result<Vec<Tensor>, ModelError> {
        let fail = |e: String| ModelError::Inference(e);
        let values = inputs
            .iter()
            .map(view)
            .collect::<Result<Vec<_>, String>>()
            .map_err(fail)?;
        let outputs = session
            .run(values.as_slice())
            .map_err(|e| fail(e.to_string()))?;
        outputs
            .values()
            .zip(&self.outputs)
            .map(|(value, ty)| tract_tensor(&value, *ty))
            .collect::<Result<Vec<_>, String>>()
            .map_err(fail)
    }
}

fn new_session(environment: &Environment, bytes: &[u8]) -> Result<Session, String> {
    let text = |e: ort::Error<ort::session::builder::SessionBuilder>| e.to_string();
    // One thread a call: the server runs one call per core side by side, so
    // a pool of threads per call would only make them fight for the cores.
    let mut builder = Session::builder(environment)
        .map_err(|e| e.to_string())?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(text)?
        .with_intra_threads(1)
        .map_err(text)?
        .with_inter_threads(1)
        .map_err(text)?;
    builder.commit_from_memory(bytes).map_err(|e| e.to_string())
}

/// An input or output as ONNX Runtime reports it.
struct Outlet {
    /// What the protocol shows.
    info: TensorInfo,
    ty: TensorElementType,
    datum: DatumType,
    /// The name of its first dimension, if the model names it.
    batch_symbol: Option<String>,
}

fn outlet(name: &str, ty: &ValueType) -> Result<Outlet, String> {
    let ValueType::Tensor {
        ty,
        shape,
        dimension_symbols,
    } = ty
    else {
        return Err(format!("{name:?} is not a tensor ({ty:?})"));
    };
    let (datum, datatype) = datum(*ty)
        .and_then(|d| Some((d, DataType::from_datum(d)?)))
        .ok_or_else(|| format!("{name:?} has element type {ty:?}"))?;
    Ok(Outlet {
        info: TensorInfo {
            name: name.to_string(),
            datatype,
            shape: shape.iter().map(|d| if *d < 0 { -1 } else { *d }).collect(),
        },
        ty: *ty,
        datum,
        batch_symbol: dimension_symbols.first().filter(|s| !s.is_empty()).cloned(),
    })
}

fn datum(ty: TensorElementType) -> Option<DatumType> {
    Some(match ty {
        TensorElementType::Bool => DatumType::Bool,
        TensorElementType::Int8 => DatumType::I8,
        TensorElementType::Int16 => DatumType::I16,
        TensorElementType::Int32 => DatumType::I32,
        TensorElementType::Int64 => DatumType::I64,
        TensorElementType::Uint8 => DatumType::U8,
        TensorElementType::Uint16 => DatumType::U16,
        TensorElementType::Uint32 => DatumType::U32,
        TensorElementType::Uint64 => DatumType::U64,
        TensorElementType::Float16 => DatumType::F16,
        TensorElementType::Float32 => DatumType::F32,
        TensorElementType::Float64 => DatumType::F64,
        TensorElementType::String => DatumType::String,
        _ => return None,
    })
}

/// A tract tensor as an ONNX Runtime input: a view of its data, or for
/// strings (which ONNX Runtime keeps in its own form) a copy.
fn view(t: &Tensor) -> Result<ort::session::SessionInputValue<'_>, String> {
    fn of<
        T: ort::value::PrimitiveTensorElementType + tract_onnx::prelude::Datum + std::fmt::Debug,
    >(
        t: &Tensor,
    ) -> Result<ort::session::SessionInputValue<'_>, String> {
        let data = t
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<T>())
            .map_err(|e| format!("{e:#}"))?;
        TensorRef::from_array_view((t.shape(), data))
            .map(Into::into)
            .map_err(|e| e.to_string())
    }
    match t.datum_type() {
        DatumType::Bool => of::<bool>(t),
        DatumType::I8 => of::<i8>(t),
        DatumType::I16 => of::<i16>(t),
        DatumType::I32 => of::<i32>(t),
        DatumType::I64 => of::<i64>(t),
        DatumType::U8 => of::<u8>(t),
        DatumType::U16 => of::<u16>(t),
        DatumType::U32 => of::<u32>(t),
        DatumType::U64 => of::<u64>(t),
        DatumType::F16 => of::<f16>(t),
        DatumType::F32 => of::<f32>(t),
        DatumType::F64 => of::<f64>(t),
        DatumType::String => {
            let data = t
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<String>())
                .map_err(|e| format!("{e:#}"))?;
            ort::value::Tensor::from_string_array((t.shape(), data))
                .map(Into::into)
                .map_err(|e| e.to_string())
        }
        other => Err(format!("element type {other:?} cannot go to ONNX Runtime")),
    }
}

/// An ONNX Runtime output as a tract tensor (a copy: the output's memory is
/// the session's).
fn tract_tensor(value: &DynValue, ty: TensorElementType) -> Result<Tensor, String> {
    fn of<T: ort::value::PrimitiveTensorElementType + tract_onnx::prelude::Datum + Copy>(
        value: &DynValue,
    ) -> Result<Tensor, String> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| e.to_string())?;
        Tensor::from_shape(&dims(shape), data).map_err(|e| format!("{e:#}"))
    }
    match ty {
        TensorElementType::Bool => of::<bool>(value),
        TensorElementType::Int8 => of::<i8>(value),
        TensorElementType::Int16 => of::<i16>(value),
        TensorElementType::Int32 => of::<i32>(value),
        TensorElementType::Int64 => of::<i64>(value),
        TensorElementType::Uint8 => of::<u8>(value),
        TensorElementType::Uint16 => of::<u16>(value),
        TensorElementType::Uint32 => of::<u32>(value),
        TensorElementType::Uint64 => of::<u64>(value),
        TensorElementType::Float16 => of::<f16>(value),
        TensorElementType::Float32 => of::<f32>(value),
        TensorElementType::Float64 => of::<f64>(value),
        TensorElementType::String => {
            let (shape, data) = value.try_extract_strings().map_err(|e| e.to_string())?;
            tract_onnx::prelude::tract_ndarray::ArrayD::from_shape_vec(dims(shape), data)
                .map(Tensor::from)
                .map_err(|e| e.to_string())
        }
        other => Err(format!("output element type {other:?}")),
    }
}

fn dims(shape: &[i64]) -> Vec<usize> {
    shape
        .iter()
        .map(|d| usize::try_from(*d).unwrap_or(0))
        .collect()
}
