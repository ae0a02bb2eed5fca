#!/usr/bin/env python3
"""Generates the ONNX fixtures of edge's model-serving tests and benchmarks.

Writes, beside this script, in fixtures/:
  iris.onnx, iris.json   scikit-learn logistic regression on iris (skl2onnx,
                         zipmap=False); JSON = sample request + onnxruntime's answer
  mlp.onnx, mlp.json     a small float MLP (Gemm/Relu/Softmax) with a dynamic
                         batch dimension; JSON as above
  backend/NAME.onnx, backend/NAME.json
                         ONNX backend test cases from the onnx wheel, their
                         test_data_set_0 converted to Open Inference Protocol JSON
  typed/NAME.onnx, typed/NAME.json
                         x + x in FP16 and FP64 (the backend cases of those
                         types hold NaN, which JSON cannot carry)
  convnet.onnx, convnet.json
                         a small conv net on a 1x3x224x224 image (benches/model.sh);
                         JSON = onnxruntime's answer for a pattern input
  echo.onnx              FP32, INT64 and STRING (BYTES) inputs of one length n
                         returned unchanged: wire-format round trips (NaN, ±Inf,
                         text) through every protocol
  broken/                models that must fail to load, for the error paths
                         (not ONNX, an unknown operator, an FP64 Sigmoid only
                         the dry run at load finds, a Celu tract gets wrong)
and copies iris.onnx to examples/models/ for examples/model.hcl.

Run it again only to change the fixtures: `python3 tests/model/make_models.py`
(or name some: `python3 tests/model/make_models.py convnet`).
(tests/model/conformance.py is separate: it writes its cases at test time.)
Needs: onnx skl2onnx scikit-learn onnxruntime numpy.
"""

import json
import os
import shutil
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
EXAMPLES = os.path.join(HERE, "..", "..", "examples", "models")

DATATYPES = {
    np.dtype("bool"): "BOOL",
    np.dtype("int8"): "INT8",
    np.dtype("int16"): "INT16",
    np.dtype("int32"): "INT32",
    np.dtype("int64"): "INT64",
    np.dtype("uint8"): "UINT8",
    np.dtype("uint16"): "UINT16",
    np.dtype("uint32"): "UINT32",
    np.dtype("uint64"): "UINT64",
    np.dtype("float16"): "FP16",
    np.dtype("float32"): "FP32",
    np.dtype("float64"): "FP64",
}

# Backend cases covering the element types and a spread of common operators.
BACKEND_CASES = [
    "test_add",
    "test_add_uint8",
    "test_abs",
    "test_and2d",
    "test_not_2d",
    "test_argmax_default_axis_example",
    "test_gemm_default_no_bias",
    "test_greater",
    "test_matmul_2d",
    "test_max_int64",
    "test_max_uint16",
    "test_max_uint32",
    "test_max_uint64",
    "test_min_int16",
    "test_min_int32",
    "test_mul_uint8",
    "test_relu",
    "test_softmax_example",
    "test_sub_int8",
    "test_where_example",
    # starts/ends are inputs: tract builds DynSlices whose lengths edge re-homes
    "test_slice_default_axes",
]
# Models shipped as files in the wheel (onnx/backend/test/data/*/NAME/).
BACKEND_FILES = [
    "pytorch-converted/test_Conv2d",
    "pytorch-converted/test_MaxPool2d",
    "pytorch-converted/test_Linear",
    "pytorch-converted/test_BatchNorm2d_eval",
    "pytorch-converted/test_Softmax",
    "pytorch-operator/test_operator_flatten",
    "pytorch-operator/test_operator_reduced_mean",
]


def tensor_json(name, arr):
    arr = np.asarray(arr)
    dt = DATATYPES[arr.dtype]
    flat = arr.reshape(-1)
    if dt == "BOOL":
        data = [bool(x) for x in flat]
    elif dt.startswith("FP"):
        data = [float(x) for x in flat.astype(np.float64)]
    else:
        data = [int(x) for x in flat]
    return {"name": name, "datatype": dt, "shape": list(arr.shape), "data": data}


def finite(arrays):
    return all(
        not np.issubdtype(a.dtype, np.floating) or np.isfinite(a).all() for a in arrays
    )


def write_case(path, model_file, inputs, outputs, rtol, atol):
    with open(path, "w") as f:
        json.dump(
            {
                "model": model_file,
                "rtol": rtol,
                "atol": atol,
                "inputs": [tensor_json(n, a) for n, a in inputs],
                "outputs": [tensor_json(n, a) for n, a in outputs],
            },
            f,
        )
        f.write("\n")


def run_ort(model_path, feeds):
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return list(zip(names, sess.run(names, feeds)))


def iris():
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    onx = to_onnx(
        clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3}
    )
    path = os.path.join(OUT, "iris.onnx")
    onnx.save(onx, path)
    sample = x[[0, 60, 120, 149]]
    inp = onx.graph.input[0].name
    write_case(
        os.path.join(OUT, "iris.json"),
        "iris.onnx",
        [(inp, sample)],
        run_ort(path, {inp: sample}),
        1e-4,
        1e-5,
    )
    os.makedirs(EXAMPLES, exist_ok=True)
    shutil.copy(path, os.path.join(EXAMPLES, "iris.onnx"))


def mlp():
    rng = np.random.default_rng(7)
    sizes = [32, 64, 64, 10]
    nodes, inits = [], []
    prev = "x"
    for i in range(3):
        w = (rng.standard_normal((sizes[i], sizes[i + 1])) / np.sqrt(sizes[i])).astype(np.float32)
        b = (rng.standard_normal(sizes[i + 1]) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out]))
        if i < 2:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
            out = f"r{i}"
        prev = out
    nodes.append(helper.make_node("Softmax", [prev], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = os.path.join(OUT, "mlp.onnx")
    onnx.save(model, path)
    sample = rng.standard_normal((3, 32)).astype(np.float32)
    write_case(
        os.path.join(OUT, "mlp.json"),
        "mlp.onnx",
        [("x", sample)],
        run_ort(path, {"x": sample}),
        1e-4,
        1e-5,
    )


def backend():
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = {c.name: c for c in node.collect_testcases(None)}
    d = os.path.join(OUT, "backend")
    os.makedirs(d, exist_ok=True)
    for name in BACKEND_CASES:
        case = cases[name]
        model = case.model
        ins, outs = (
            [numpy_helper.to_array(a) if isinstance(a, onnx.TensorProto) else a for a in side]
            for side in case.data_sets[0]
        )
        in_names = [i.name for i in model.graph.input]
        out_names = [o.name for o in model.graph.output]
        if not finite(list(ins) + list(outs)):
            raise SystemExit(f"{name}: non-finite data cannot be written as JSON")
        onnx.save(model, os.path.join(d, f"{name}.onnx"))
        write_case(
            os.path.join(d, f"{name}.json"),
            f"{name}.onnx",
            list(zip(in_names, ins)),
            list(zip(out_names, outs)),
            case.rtol,
            max(case.atol, 1e-6),
        )
    data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    for rel in BACKEND_FILES:
        src = os.path.join(data, rel)
        name = os.path.basename(rel)
        model = onnx.load(os.path.join(src, "model.onnx"))
        sets = os.path.join(src, "test_data_set_0")

        def load(prefix, count):
            out = []
            for i in range(count):
                t = onnx.TensorProto()
                with open(os.path.join(sets, f"{prefix}_{i}.pb"), "rb") as f:
                    t.ParseFromString(f.read())
                out.append(numpy_helper.to_array(t))
            return out

        inits = {i.name for i in model.graph.initializer}
        in_names = [i.name for i in model.graph.input if i.name not in inits]
        out_names = [o.name for o in model.graph.output]
        ins, outs = load("input", len(in_names)), load("output", len(out_names))
        shutil.copy(os.path.join(src, "model.onnx"), os.path.join(d, f"{name}.onnx"))
        write_case(
            os.path.join(d, f"{name}.json"),
            f"{name}.onnx",
            list(zip(in_names, ins)),
            list(zip(out_names, outs)),
            1e-3,
            1e-5,
        )


def typed():
    d = os.path.join(OUT, "typed")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(3)
    for name, proto, dtype in [
        ("add_fp16", TensorProto.FLOAT16, np.float16),
        ("add_fp64", TensorProto.DOUBLE, np.float64),
    ]:
        graph = helper.make_graph(
            [helper.make_node("Add", ["x", "x"], ["y"])],
            name,
            [helper.make_tensor_value_info("x", proto, ["n", 3])],
            [helper.make_tensor_value_info("y", proto, ["n", 3])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = os.path.join(d, f"{name}.onnx")
        onnx.save(model, path)
        sample = rng.standard_normal((2, 3)).astype(dtype)
        write_case(
            os.path.join(d, f"{name}.json"),
            f"{name}.onnx",
            [("x", sample)],
            run_ort(path, {"x": sample}),
            1e-3,
            1e-6,
        )


def echo():
    names = [("f32", TensorProto.FLOAT), ("i64", TensorProto.INT64), ("text", TensorProto.STRING)]
    graph = helper.make_graph(
        [helper.make_node("Identity", [n], [f"{n}_out"]) for n, _ in names],
        "echo",
        [helper.make_tensor_value_info(n, t, ["n"]) for n, t in names],
        [helper.make_tensor_value_info(f"{n}_out", t, ["n"]) for n, t in names],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, "echo.onnx"))


def broken():
    d = os.path.join(OUT, "broken")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "not-onnx.onnx"), "w") as f:
        f.write("this is not an onnx model\n")
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")],
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    model.ir_version = 8
    onnx.save(model, os.path.join(d, "unsupported-op.onnx"))
    # Loads, but tract has no FP64 Sigmoid: the dry run at load must catch it.
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["y"])],
        "sigmoid_fp64",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, os.path.join(d, "sigmoid-fp64.onnx"))
    # Loads and runs, but tract leaves alpha out of Celu's negative part.
    graph = helper.make_graph(
        [helper.make_node("Celu", ["x"], ["y"], alpha=2.0, name="act")],
        "celu_alpha",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, os.path.join(d, "celu-alpha.onnx"))


def convnet_input():
    """The convnet's sample input, a pattern the Rust tests rebuild:
    element i of the flattened 1x3x224x224 tensor is (i % 251) / 251 - 0.5."""
    i = np.arange(3 * 224 * 224, dtype=np.int64)
    return ((i % 251).astype(np.float32) / np.float32(251) - np.float32(0.5)).reshape(1, 3, 224, 224)


def convnet():
    """A small image classifier with ResNet's input, 1x3x224x224: two strided
    3x3 convolutions, global average pooling, a dense layer and softmax."""
    rng = np.random.default_rng(11)
    w0 = (rng.standard_normal((16, 3, 3, 3)) / np.sqrt(27)).astype(np.float32)
    b0 = (rng.standard_normal(16) * 0.1).astype(np.float32)
    w1 = (rng.standard_normal((32, 16, 3, 3)) / np.sqrt(144)).astype(np.float32)
    b1 = (rng.standard_normal(32) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((32, 10)) / np.sqrt(32)).astype(np.float32)
    b2 = (rng.standard_normal(10) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w0, "w0"), (b0, "b0"), (w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]]
    conv = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Conv", ["image", "w0", "b0"], ["c0"], **conv),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = os.path.join(OUT, "convnet.onnx")
    onnx.save(model, path)
    ((_, probs),) = run_ort(path, {"image": convnet_input()})
    with open(os.path.join(OUT, "convnet.json"), "w") as f:
        json.dump({"model": "convnet.onnx", "input": "image", "rtol": 1e-4, "atol": 1e-5,
                   "probabilities": [float(x) for x in probs.reshape(-1)]}, f, indent=1)
        f.write("\n")


FIXTURES = {"iris": iris, "mlp": mlp, "backend": backend, "typed": typed,
            "echo": echo, "broken": broken, "convnet": convnet}

if __name__ == "__main__":
    import sys
    os.makedirs(OUT, exist_ok=True)
    for name in sys.argv[1:] or FIXTURES:
        FIXTURES[name]()
    print(f"fixtures written to {OUT}")
