//! An ONNX model loaded with tract into an optimized, runnable plan (or
//! handed to ONNX Runtime, with `Backend::OnnxRuntime`), and the names,
//! element types and shapes the protocol reports for it.

use crate::error::ModelError;
use crate::onnxruntime::OrtModel;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::DynSlice;
use tract_onnx::tract_hir::internal::{Factoid, GenericFactoid, ShapeFactoid};

/// The Open Inference Protocol's element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DataType {
    #[serde(rename = "BOOL")]
    Bool,
    #[serde(rename = "INT8")]
    Int8,
    #[serde(rename = "INT16")]
    Int16,
    #[serde(rename = "INT32")]
    Int32,
    #[serde(rename = "INT64")]
    Int64,
    #[serde(rename = "UINT8")]
    Uint8,
    #[serde(rename = "UINT16")]
    Uint16,
    #[serde(rename = "UINT32")]
    Uint32,
    #[serde(rename = "UINT64")]
    Uint64,
    #[serde(rename = "FP16")]
    Fp16,
    #[serde(rename = "FP32")]
    Fp32,
    #[serde(rename = "FP64")]
    Fp64,
    #[serde(rename = "BYTES")]
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    pub fn parse(s: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.as_str() == s)
    }

    pub(crate) fn from_datum(dt: DatumType) -> Option<DataType> {
        Some(match dt {
            DatumType::Bool => DataType::Bool,
            DatumType::I8 => DataType::Int8,
            DatumType::I16 => DataType::Int16,
            DatumType::I32 => DataType::Int32,
            DatumType::I64 => DataType::Int64,
            DatumType::U8 => DataType::Uint8,
            DatumType::U16 => DataType::Uint16,
            DatumType::U32 => DataType::Uint32,
            DatumType::U64 => DataType::Uint64,
            DatumType::F16 => DataType::Fp16,
            DatumType::F32 => DataType::Fp32,
            DatumType::F64 => DataType::Fp64,
            DatumType::String => DataType::Bytes,
            _ => return None,
        })
    }
}

/// One input or output as the model metadata reports it; `-1` marks a
/// dimension the model leaves open.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// A model ready to run. `run` takes `&self`: every call gets its own state,
/// so several batches may run at once on different threads.
#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    /// Dimension 0 of every input and output is one shared, open batch
    /// dimension, so requests can be stacked along it.
    pub batchable: bool,
    engine: Engine,
    /// tract's element type of each input (a protocol type is coarser).
    input_types: Vec<DatumType>,
}

/// What runs a model: tract, built in, or ONNX Runtime's shared library.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Backend {
    #[default]
    Tract,
    /// ONNX Runtime from this library; else `$EDGE_ONNXRUNTIME_LIB`, else
    /// `libonnxruntime.so` in the loader's search path.
    OnnxRuntime { library: Option<PathBuf> },
}

#[derive(Debug)]
enum Engine {
    Tract(Arc<TypedRunnableModel>),
    OnnxRuntime(OrtModel),
}

/// The dimension given to the first axis of inputs whose first axis is open.
const BATCH: &str = "batch";

impl Model {
    /// Reads, checks and optimizes the model at `path` for tract.
    pub fn load(path: &Path, name: &str) -> Result<Model, ModelError> {
        Model::load_with(path, name, &Backend::Tract)
    }

    /// Reads, checks and prepares the model at `path` for `backend`, then
    /// runs it once. Errors say which of missing file, not ONNX,
    /// unsupported operator, backend missing or other failure it was.
    pub fn load_with(path: &Path, name: &str, backend: &Backend) -> Result<Model, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ModelError::NotFound {
                path: path.to_path_buf(),
            },
            _ => ModelError::Read {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        if let Backend::OnnxRuntime { library } = backend {
            return Model::load_onnxruntime(path, name, bytes, library.as_deref());
        }
        let onnx = tract_onnx::onnx();
        let mut proto = onnx
            .proto_model_for_read(&mut bytes.as_slice())
            .map_err(|e| not_onnx(path, format!("{e}")))?;
        let Some(graph) = proto.graph.as_mut() else {
            return Err(not_onnx(path, "it has no graph".to_string()));
        };
        crate::gaps::mend(graph);
        let graph = &*graph;
        if graph.node.is_empty() && graph.output.is_empty() {
            return Err(not_onnx(path, "its graph is empty".to_string()));
        }
        if let Some(n) = graph
            .node
            .iter()
            .find(|n| !onnx.op_register.0.contains_key(&n.op_type))
        {
            let mut op = if n.domain.is_empty() || n.domain == "ai.onnx" {
                n.op_type.clone()
            } else {
                format!("{}.{}", n.domain, n.op_type)
            };
            if !n.name.is_empty() {
                op.push_str(&format!(" (node {:?})", n.name));
            }
            return Err(ModelError::UnsupportedOperator {
                path: path.to_path_buf(),
                op,
            });
        }
        if let Some(op) = crate::gaps::known_wrong(graph) {
            return Err(ModelError::UnsupportedOperator {
                path: path.to_path_buf(),
                op,
            });
        }
        let load = |e: TractError| ModelError::Load {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let mut model = onnx.model_for_proto_model(&proto).map_err(load)?;
        let input_names = names(&model, model.input_outlets().map_err(load)?);
        let output_names = names(&model, model.output_outlets().map_err(load)?);
        let batch = model.symbols.sym(BATCH);
        let mut open_first = Vec::new();
        for (ix, input) in input_names.iter().enumerate() {
            let fact = model.input_fact(ix).map_err(load)?.clone();
            let Some(dt) = fact.datum_type.concretize() else {
                return Err(load_reason(
                    path,
                    format!("input {:?} has no element type", input),
                ));
            };
            if fact.shape.is_open() {
                return Err(load_reason(
                    path,
                    format!("input {:?} has no fixed rank", input),
                ));
            }
            let mut dims: Vec<TDim> = Vec::new();
            for (axis, d) in fact.shape.dims().enumerate() {
                dims.push(match d.concretize() {
                    Some(TDim::Val(v)) => TDim::Val(v),
                    _ if axis == 0 => TDim::Sym(batch.clone()),
                    Some(sym) => sym,
                    None => TDim::Sym(model.symbols.new_with_prefix(&format!("{}_{axis}", input))),
                });
            }
            open_first.push(dims.first() == Some(&TDim::Sym(batch.clone())));
            let shape = ShapeFactoid::closed(dims.into_iter().map(GenericFactoid::Only).collect());
            model
                .set_input_fact(ix, InferenceFact::dt_shape(dt, shape))
                .map_err(load)?;
        }
        let mut typed = model.into_typed().map_err(load)?;
        typed.declutter().map_err(load)?;
        adopt_orphan_symbols(&mut typed).map_err(load)?;
        typed.optimize().map_err(load)?;
        let inputs = infos(path, &typed, &input_names, true)?;
        let outputs = infos(path, &typed, &output_names, false)?;
        let batch_dim = TDim::Sym(batch);
        let batchable = !open_first.is_empty()
            && open_first.iter().all(|o| *o)
            && (0..outputs.len()).all(|ix| {
                typed
                    .output_fact(ix)
                    .is_ok_and(|f| f.shape.iter().next() == Some(&batch_dim))
            });
        let input_types = (0..inputs.len())
            .map(|ix| typed.input_fact(ix).map(|f| f.datum_type))
            .collect::<TractResult<Vec<_>>>()
            .map_err(load)?;
        let plan = typed.into_runnable().map_err(load)?;
        let model = Model {
            name: name.to_string(),
            inputs,
            outputs,
            batchable,
            engine: Engine::Tract(plan),
            input_types,
        };
        model.dry_run().map_err(|e| load_reason(path, e))?;
        Ok(model)
    }

    /// ONNX Runtime reads and checks the model itself; what it reports of
    /// the inputs and outputs is what the protocol shows.
    fn load_onnxruntime(
        path: &Path,
        name: &str,
        bytes: Vec<u8>,
        library: Option<&Path>,
    ) -> Result<Model, ModelError> {
        let loaded = OrtModel::load(path, bytes, library)?;
        let model = Model {
            name: name.to_string(),
            inputs: loaded.inputs,
            outputs: loaded.outputs,
            batchable: loaded.batchable,
            engine: Engine::OnnxRuntime(loaded.model),
            input_types: loaded.input_types,
        };
        model.dry_run().map_err(|e| load_reason(path, e))?;
        Ok(model)
    }

    /// The engine that runs this model.
    pub fn backend(&self) -> &'static str {
        match self.engine {
            Engine::Tract(_) => "tract",
            Engine::OnnxRuntime(_) => "onnxruntime",
        }
    }

    /// Runs the model on tensors given in the order of [`Model::inputs`].
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ModelError> {
        match &self.engine {
            Engine::Tract(plan) => {
                let inputs: TVec<TValue> = inputs.into_iter().map(TValue::from).collect();
                let outputs = plan
                    .run(inputs)
                    .map_err(|e| ModelError::Inference(format!("{e:#}")))?;
                Ok(outputs.into_iter().map(|v| v.into_tensor()).collect())
            }
            Engine::OnnxRuntime(m) => m.run(&inputs),
        }
    }

    /// The most rows (up to `max`) worth stacking into one run: per-row
    /// cost is measured on zeros at 1, 2, 4... rows with `workers` runs at
    /// once, as the batcher runs them, and the largest batch within 5% of
    /// the cheapest per row is kept (each size measured twice where the
    /// budget allows, the faster kept). Stacking pays off for small dense
    /// models, but a convolution over a large image gets slower per row once
    /// its buffers outgrow the caches (tract 0.23, a 224x224 conv net, two
    /// workers on two cores: 1600 rows/s in batches of one, 1130 in batches
    /// of two, 800 in batches of four), so a fixed limit would cut
    /// throughput. Measuring stops at `budget`, and where zeros cannot run,
    /// `max` is kept.
    pub fn batch_limit(&self, max: usize, workers: usize, budget: std::time::Duration) -> usize {
        if !self.batchable || max <= 1 {
            return 1;
        }
        let started = std::time::Instant::now();
        let mut costs: Vec<(usize, f64)> = Vec::new();
        let mut rows = 1;
        loop {
            let Some(per_row) = self.per_row_cost(rows, workers.max(1)) else {
                return max;
            };
            costs.push((rows, per_row));
            let best = costs.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
            if rows >= max || per_row > best * 1.5 || started.elapsed() > budget {
                break;
            }
            rows = (rows * 2).min(max);
        }
        // Another program on the cores only ever makes a run slower, so a
        // second pass within the budget keeps each size's faster figure.
        for cost in &mut costs {
            if started.elapsed() > budget {
                break;
            }
            if let Some(again) = self.per_row_cost(cost.0, workers.max(1)) {
                cost.1 = cost.1.min(again);
            }
        }
        largest_near_cheapest(&costs)
    }

    /// Seconds per row with `workers` threads running batches of `rows`
    /// rows side by side for 30 ms (at least one run each, after one to
    /// warm up): the wall time over the rows all of them ran, which is what
    /// the server gets when every worker is busy.
    fn per_row_cost(&self, rows: usize, workers: usize) -> Option<f64> {
        const SPAN: std::time::Duration = std::time::Duration::from_millis(30);
        let inputs = self.sample_inputs(rows, 1, false).ok()?;
        let start = std::sync::Barrier::new(workers);
        let runs = std::thread::scope(|s| {
            let threads: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let warm = self.run_guarded(inputs.clone()).is_ok();
                        start.wait();
                        let t = std::time::Instant::now();
                        let mut runs = 0;
                        while runs == 0 || t.elapsed() < SPAN {
                            self.run_guarded(inputs.clone()).ok()?;
                            runs += 1;
                        }
                        warm.then(|| (runs, t.elapsed().as_secs_f64()))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().ok().flatten())
                .collect::<Option<Vec<(usize, f64)>>>()
        })?;
        let wall = runs.iter().map(|r| r.1).fold(0.0, f64::max);
        let total: usize = runs.iter().map(|r| r.0).sum();
        Some(wall / (total * rows) as f64)
    }

    /// Inputs of the declared shapes, open dimensions `rows` along axis 0
    /// and `open` elsewhere: zeros, or with `counting` input k all k (so a
    /// starts input comes out below the ends input that follows it).
    fn sample_inputs(
        &self,
        rows: usize,
        open: usize,
        counting: bool,
    ) -> Result<Vec<Tensor>, String> {
        let mut tensors = Vec::new();
        for (ix, (info, dt)) in self.inputs.iter().zip(&self.input_types).enumerate() {
            let shape: Vec<usize> = info
                .shape
                .iter()
                .enumerate()
                .map(|(axis, d)| match usize::try_from(*d) {
                    Ok(d) => d,
                    Err(_) if axis == 0 => rows,
                    Err(_) => open,
                })
                .collect();
            let t = if *dt == DatumType::String {
                Ok(tract_ndarray::ArrayD::from_elem(shape.as_slice(), String::new()).into_tensor())
            } else if counting {
                tensor0(ix as f32)
                    .broadcast_scalar_to_shape(&shape)
                    .and_then(|t| t.cast_to_dt(*dt).map(|t| t.into_owned()))
            } else {
                Tensor::zero_dt(*dt, &shape)
            };
            tensors.push(t.map_err(|e| format!("input {:?}: {e:#}", info.name))?);
        }
        Ok(tensors)
    }

    /// [`Model::run`], with a kernel that panics on this model turned into
    /// an error.
    fn run_guarded(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ModelError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(inputs))).unwrap_or_else(
            |panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(ModelError::Inference(format!(
                    "{} panicked: {what}",
                    self.backend()
                )))
            },
        )
    }

    /// Runs the model once on zeros of its declared shapes, open dimensions
    /// 1, so a model tract cannot run fails at load and not on the first
    /// request. What zeros cannot run (a Slice whose starts and ends are
    /// inputs, a convolution along an open dimension) gets a second try, each
    /// input k all k and open dimensions 8; the load fails only when both
    /// fail.
    fn dry_run(&self) -> Result<(), String> {
        self.dry_run_with(false)
            .or_else(|e| self.dry_run_with(true).map_err(|_| e))
    }

    fn dry_run_with(&self, counting: bool) -> Result<(), String> {
        let n = if counting { 8 } else { 1 };
        let tensors = self.sample_inputs(n, n, counting)?;
        let shapes: Vec<String> = tensors.iter().map(|t| format!("{:?}", t.shape())).collect();
        self.run_guarded(tensors).map(|_| ()).map_err(|e| {
            format!(
                "a dry run on {} of shape {} failed: {}",
                if counting { "input k all k" } else { "zeros" },
                shapes.join(", "),
                match e {
                    ModelError::Inference(m) => m,
                    e => e.to_string(),
                }
            )
        })
    }
}

/// Of (rows, seconds per row) measurements, the most rows whose per-row
/// cost is within 5% of the cheapest: a flat curve takes the larger batch.
/// (With 10%, run-to-run noise on two busy cores sometimes picked batches of
/// two for the conv net, which cost it a third of its throughput.)
fn largest_near_cheapest(costs: &[(usize, f64)]) -> usize {
    let best = costs.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
    costs
        .iter()
        .filter(|c| c.1 <= best * 1.05)
        .map(|c| c.0)
        .max()
        .unwrap_or(1)
}

/// tract 0.23 turns a `Slice` whose starts/ends come at run time into
/// `DynSlice`s whose lengths are symbols of a throwaway model, dropped once
/// the op is built: every run then fails with "Symbol <Sym0> points to an
/// invalid (dead ?) SymbolScope". Those lengths get symbols of the model's own
/// scope; any other dimension left in a dropped scope fails the load.
fn adopt_orphan_symbols(model: &mut TypedModel) -> TractResult<()> {
    let orphan = |d: &TDim| d.symbols().iter().any(|s| s.scope().is_none());
    let mut changed = false;
    for ix in 0..model.nodes.len() {
        let Some(axis) = model.nodes[ix]
            .op_as::<DynSlice>()
            .filter(|op| orphan(&op.len))
            .map(|op| op.axis)
        else {
            continue;
        };
        let len = model.symbols.new_with_prefix("slice_len").to_dim();
        model.nodes[ix].op = Box::new(DynSlice::new(axis, len));
        changed = true;
    }
    if changed {
        model.refresh_output_facts()?;
    }
    if let Some(node) = model
        .nodes
        .iter()
        .find(|n| n.outputs.iter().any(|o| o.fact.shape.iter().any(orphan)))
    {
        return Err(TractError::msg(format!(
            "node {:?} ({}) has a dimension whose symbol tract dropped",
            node.name,
            node.op.name()
        )));
    }
    Ok(())
}

fn not_onnx(path: &Path, reason: String) -> ModelError {
    ModelError::NotOnnx {
        path: path.to_path_buf(),
        reason,
    }
}

fn load_reason(path: &Path, reason: String) -> ModelError {
    ModelError::Load {
        path: path.to_path_buf(),
        reason,
    }
}

/// ONNX names of the given outlets: the label tract kept, else the node's name.
fn names(model: &InferenceModel, outlets: &[OutletId]) -> Vec<String> {
    outlets
        .iter()
        .map(|o| {
            model
                .outlet_label(*o)
                .map(str::to_string)
                .unwrap_or_else(|| model.node(o.node).name.clone())
        })
        .collect()
}

fn infos(
    path: &Path,
    model: &TypedModel,
    names: &[String],
    inputs: bool,
) -> Result<Vec<TensorInfo>, ModelError> {
    names
        .iter()
        .enumerate()
        .map(|(ix, name)| {
            let fact = if inputs {
                model.input_fact(ix)
            } else {
                model.output_fact(ix)
            }
            .map_err(|e| load_reason(path, format!("{e:#}")))?;
            let datatype = DataType::from_datum(fact.datum_type).ok_or_else(|| {
                load_reason(
                    path,
                    format!("{name:?} has element type {:?}", fact.datum_type),
                )
            })?;
            let shape = fact
                .shape
                .iter()
                .map(|d| d.as_i64().unwrap_or(-1))
                .collect();
            Ok(TensorInfo {
                name: name.clone(),
                datatype,
                shape,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/model/fixtures")
            .join(name)
    }

    #[test]
    fn open_first_dimensions_become_the_batch_dimension() {
        let iris = Model::load(&fixture("iris.onnx"), "iris").unwrap();
        assert!(iris.batchable);
        assert_eq!(iris.inputs[0].shape, [-1, 4]);
        let mlp = Model::load(&fixture("mlp.onnx"), "mlp").unwrap();
        assert!(mlp.batchable);
        assert_eq!(mlp.outputs[0].shape, [-1, 10]);
        let fixed = Model::load(&fixture("backend/test_add.onnx"), "add").unwrap();
        assert!(!fixed.batchable);
        assert_eq!(fixed.inputs[0].shape, [3, 4, 5]);
    }

    #[test]
    fn batches_stop_growing_where_rows_get_dearer() {
        let budget = std::time::Duration::from_secs(5);
        // The 224x224 conv net of benches/model.sh, two workers, release.
        assert_eq!(
            largest_near_cheapest(&[(1, 0.62e-3), (2, 0.88e-3), (4, 1.24e-3)]),
            1
        );
        assert_eq!(
            largest_near_cheapest(&[(1, 1.0), (2, 0.6), (4, 0.35), (8, 0.3)]),
            8
        );
        assert_eq!(largest_near_cheapest(&[(1, 1.0), (2, 1.05), (4, 1.0)]), 4);
        let mlp = Model::load(&fixture("mlp.onnx"), "mlp").unwrap();
        for workers in [1, 2] {
            let limit = mlp.batch_limit(32, workers, budget);
            assert!((1..=32).contains(&limit), "{limit}");
        }
        assert_eq!(mlp.batch_limit(1, 2, budget), 1);
        let fixed = Model::load(&fixture("backend/test_add.onnx"), "add").unwrap();
        assert_eq!(fixed.batch_limit(32, 2, budget), 1);
    }

    #[test]
    fn datatypes_round_trip_by_name() {
        for d in DataType::ALL {
            assert_eq!(DataType::parse(d.as_str()), Some(d));
        }
        assert_eq!(DataType::parse("FLOAT32"), None);
    }
}
