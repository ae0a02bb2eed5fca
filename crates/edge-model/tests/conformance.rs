//! ONNX conformance: tests/model/conformance.py builds small models with the
//! `onnx` package (and takes the ONNX backend cases edge once got wrong) at
//! test time; each is loaded and run in-process and must give the outputs
//! onnx's reference evaluator gives (NaN equal to NaN, per-type tolerances),
//! or be refused at load with the reason listed in `REFUSED`. The same cases
//! through the onnxruntime backend must all load and match.

use edge_model::{Backend, Model, ModelError};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tract_onnx::prelude::*;

/// Cases edge refuses at load (tract 0.23 computes them wrongly or cannot
/// run them): case name and a part of the load error.
const REFUSED: &[(&str, &str)] = &[
    ("celu_alpha", "Celu with alpha=2"),
    ("sigmoid_fp64", "a dry run on zeros of shape [6] failed"),
    ("swish_alpha", "Swish with alpha=0.5"),
    ("test_attention_3d_local_window", "left_window_size"),
    (
        "test_attention_4d_causal_with_past_and_present",
        "is_causal=1 and a past_key",
    ),
    ("test_attention_bidirectional_window", "left_window_size"),
    ("test_attention_local_window", "left_window_size"),
    (
        "test_attention_local_window_with_past",
        "is_causal=1 and a past_key",
    ),
    ("test_celu", "Celu with alpha=2"),
    ("test_celu_float16", "Celu with alpha=2"),
    ("test_gru_reverse", "GRU with direction=reverse"),
    ("test_lstm_reverse", "LSTM with direction=reverse"),
    ("test_simple_rnn_reverse", "RNN with direction=reverse"),
    (
        "test_spacetodepth_crd_mode_example",
        "SpaceToDepth with mode=CRD",
    ),
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/model/conformance.py")
}

/// Whether the cases can be generated here; in CI (`EDGE_TEST_ROOT=1`, where
/// deploy/test.sh installs onnx) they must be.
fn onnx_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnx, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("EDGE_TEST_ROOT").as_deref() == Ok("1") {
        panic!("python3 with the onnx package is needed (deploy/test.sh installs it)");
    }
    ok
}

fn float(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "nan" => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        v => v.as_f64().unwrap_or_else(|| panic!("{v} is not a number")),
    }
}

fn tensor(t: &Value) -> Tensor {
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = t["data"].as_array().unwrap();
    let int = |v: &Value| v.as_i64().unwrap();
    fn build<T: Datum + Copy>(shape: &[usize], v: Vec<T>) -> Tensor {
        Tensor::from_shape(shape, &v).unwrap()
    }
    match t["datatype"].as_str().unwrap() {
        "BOOL" => build(&shape, data.iter().map(|v| v.as_bool().unwrap()).collect()),
        "INT8" => build(&shape, data.iter().map(|v| int(v) as i8).collect()),
        "INT16" => build(&shape, data.iter().map(|v| int(v) as i16).collect()),
        "INT32" => build(&shape, data.iter().map(|v| int(v) as i32).collect()),
        "INT64" => build(&shape, data.iter().map(int).collect()),
        "UINT8" => build(&shape, data.iter().map(|v| int(v) as u8).collect()),
        "UINT16" => build(&shape, data.iter().map(|v| int(v) as u16).collect()),
        "UINT32" => build(&shape, data.iter().map(|v| int(v) as u32).collect()),
        "UINT64" => build(&shape, data.iter().map(|v| v.as_u64().unwrap()).collect()),
        "FP16" => build(
            &shape,
            data.iter().map(|v| f16::from_f64(float(v))).collect(),
        ),
        "FP32" => build(&shape, data.iter().map(|v| float(v) as f32).collect()),
        "FP64" => build(&shape, data.iter().map(float).collect()),
        other => panic!("datatype {other}"),
    }
}

/// The relative and absolute tolerance for an element type: a few units in
/// the last place of its precision, as sums and exponentials round.
fn tolerance(dt: DatumType) -> (f64, f64) {
    match dt {
        DatumType::F16 => (1e-2, 1e-3),
        DatumType::F32 => (1e-4, 1e-5),
        _ => (1e-9, 1e-12),
    }
}

/// Why `got` differs from `want`, if it does.
fn mismatch(got: &Tensor, want: &Tensor, case: &Value) -> Option<String> {
    if got.datum_type() != want.datum_type() || got.shape() != want.shape() {
        return Some(format!(
            "{:?} {:?}, expected {:?} {:?}",
            got.datum_type(),
            got.shape(),
            want.datum_type(),
            want.shape()
        ));
    }
    if !want.datum_type().is_float() {
        return (got != want).then(|| format!("{got:?}, expected {want:?}"));
    }
    let (mut rtol, mut atol) = tolerance(want.datum_type());
    rtol = rtol.max(case["rtol"].as_f64().unwrap_or(0.0));
    atol = atol.max(case["atol"].as_f64().unwrap_or(0.0));
    let (g, w) = (
        got.cast_to::<f64>().unwrap(),
        want.cast_to::<f64>().unwrap(),
    );
    let (g, w) = (
        g.to_plain_array_view::<f64>().unwrap(),
        w.to_plain_array_view::<f64>().unwrap(),
    );
    let bad: Vec<String> = g
        .iter()
        .zip(w.iter())
        .map(|(g, w)| (*g, *w))
        .enumerate()
        .filter(|(_, (g, w))| {
            let same = (g.is_nan() && w.is_nan())
                || g == w
                || (w.is_finite() && (*g - *w).abs() <= atol + rtol * w.abs());
            !same
        })
        .map(|(i, (g, w))| format!("[{i}] {g} (expected {w})"))
        .collect();
    (!bad.is_empty()).then(|| {
        let first: Vec<&str> = bad.iter().take(4).map(String::as_str).collect();
        format!("{} elements differ: {}", bad.len(), first.join(", "))
    })
}

/// Loads and runs one case; `Ok(None)` when it matches, `Ok(Some(e))` when
/// it was refused at load.
fn check(json: &Path, backend: &Backend) -> Result<Option<ModelError>, String> {
    let case: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let model = match Model::load_with(&json.with_extension("onnx"), "m", backend) {
        Ok(m) => m,
        Err(e) => return Ok(Some(e)),
    };
    let given = case["inputs"].as_array().unwrap();
    let mut inputs = Vec::new();
    for info in &model.inputs {
        let t = given
            .iter()
            .find(|t| t["name"] == info.name.as_str())
            .ok_or_else(|| format!("no data for input {}", info.name))?;
        inputs.push(tensor(t));
    }
    let outputs = model.run(inputs).map_err(|e| e.to_string())?;
    let mut wrong = Vec::new();
    for want in case["outputs"].as_array().unwrap() {
        let name = want["name"].as_str().unwrap();
        let ix = model
            .outputs
            .iter()
            .position(|o| o.name == name)
            .ok_or_else(|| format!("no output {name}"))?;
        if let Some(why) = mismatch(&outputs[ix], &tensor(want), &case) {
            wrong.push(format!("output {name}: {why}"));
        }
    }
    if wrong.is_empty() {
        Ok(None)
    } else {
        Err(wrong.join("; "))
    }
}

/// The cases conformance.py writes into `dir`, sorted.
fn generate(dir: &Path) -> Vec<PathBuf> {
    let out = Command::new("python3")
        .arg(script())
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "conformance.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    cases
}

#[test]
fn onnx_models_match_the_reference_evaluator() {
    if !onnx_available() {
        println!("skipped: python3 with the onnx package is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = generate(dir.path());
    let (mut passed, mut refused, mut failures) = (0, 0, Vec::new());
    for json in &cases {
        let name = json.file_stem().unwrap().to_str().unwrap();
        let expected_refusal = REFUSED.iter().find(|(n, _)| *n == name).map(|r| r.1);
        match (check(json, &Backend::Tract), expected_refusal) {
            (Ok(None), None) => passed += 1,
            (Ok(Some(e)), Some(needle)) if e.to_string().contains(needle) => refused += 1,
            (Ok(Some(e)), _) => failures.push(format!("{name}: refused at load: {e}")),
            (Ok(None), Some(needle)) => failures.push(format!(
                "{name}: loaded, expected a refusal with {needle:?}"
            )),
            (Err(e), _) => failures.push(format!("{name}: {e}")),
        }
    }
    println!(
        "conformance: {} cases, {passed} match, {refused} refused",
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 25, "only {} cases", cases.len());
}

/// Every case, those tract is refused included, through ONNX Runtime.
/// Needs `$EDGE_ONNXRUNTIME_LIB` (set by deploy/test.sh in CI).
#[test]
fn onnx_models_match_the_reference_evaluator_on_onnxruntime() {
    let Some(library) = std::env::var_os("EDGE_ONNXRUNTIME_LIB").filter(|v| !v.is_empty()) else {
        assert!(
            std::env::var_os("EDGE_TEST_ROOT").is_none(),
            "EDGE_ONNXRUNTIME_LIB is required under EDGE_TEST_ROOT (deploy/test.sh sets it)"
        );
        println!("skipped: set EDGE_ONNXRUNTIME_LIB to ONNX Runtime's library");
        return;
    };
    if !onnx_available() {
        println!("skipped: python3 with the onnx package is not available");
        return;
    }
    let backend = Backend::OnnxRuntime {
        library: Some(library.into()),
    };
    let dir = tempfile::tempdir().unwrap();
    let cases = generate(dir.path());
    let mut failures = Vec::new();
    for json in &cases {
        let name = json.file_stem().unwrap().to_str().unwrap();
        match check(json, &backend) {
            Ok(None) => {}
            Ok(Some(e)) => failures.push(format!("{name}: refused at load: {e}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    println!(
        "conformance on onnxruntime: {} cases, {} match",
        cases.len(),
        cases.len() - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
