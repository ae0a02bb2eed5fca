#!/usr/bin/env python3
"""Drives `edge model serve` with NVIDIA's tritonclient, a real Open
Inference Protocol client, over HTTP (JSON and the binary tensor extension)
or gRPC: liveness, readiness, server and model metadata, an inference
checked against the stored onnxruntime reference, errors; and, given the
address of a server of tests/model/fixtures/echo.onnx (named "echo"),
FP32 NaN/±Inf, INT64 and BYTES round trips; last, the model repository
extension (index, unload, load, config).

usage: triton_client.py http|grpc HOST:PORT MODEL CASE.json [ECHO_HOST:PORT]
Exits 0 and prints "ok" when everything matches.
"""

import json
import sys

import numpy as np
from tritonclient.utils import InferenceServerException

NP = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def client_module(protocol):
    if protocol == "grpc":
        import tritonclient.grpc as m
    else:
        import tritonclient.http as m
    return m


def make_input(m, protocol, name, arr, datatype, binary):
    t = m.InferInput(name, list(arr.shape), datatype)
    if protocol == "http":
        t.set_data_from_numpy(arr, binary_data=binary)
    else:
        t.set_data_from_numpy(arr)
    return t


def make_output(m, protocol, name, binary):
    if protocol == "http":
        return m.InferRequestedOutput(name, binary_data=binary)
    return m.InferRequestedOutput(name)


def metadata(c, protocol, call, *args):
    if protocol == "grpc":
        return call(*args, as_json=True)
    return call(*args)


def check_case(m, protocol, url, model, case, binary):
    c = m.InferenceServerClient(url=url)
    assert c.is_server_live(), "server not live"
    assert c.is_server_ready(), "server not ready"
    assert c.is_model_ready(model), "model not ready"
    meta = metadata(c, protocol, c.get_server_metadata)
    assert meta["name"] == "edge", meta
    assert "binary_tensor_data" in meta["extensions"], meta
    mm = metadata(c, protocol, c.get_model_metadata, model)
    assert mm["name"] == model and mm["platform"] == "onnx", mm
    assert [i["name"] for i in mm["inputs"]] == [i["name"] for i in case["inputs"]], mm

    inputs = []
    for i in case["inputs"]:
        arr = np.array(i["data"], dtype=NP[i["datatype"]]).reshape(i["shape"])
        inputs.append(make_input(m, protocol, i["name"], arr, i["datatype"], binary))
    outputs = [make_output(m, protocol, o["name"], binary) for o in case["outputs"]]
    result = c.infer(model, inputs, outputs=outputs, request_id="triton-1")
    response = result.get_response(as_json=True) if protocol == "grpc" else result.get_response()
    assert response["id"] == "triton-1", response
    for o in case["outputs"]:
        got = result.as_numpy(o["name"])
        want = np.array(o["data"], dtype=NP[o["datatype"]]).reshape(o["shape"])
        assert got.shape == want.shape, (o["name"], got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=case["rtol"], atol=case["atol"])
    # No outputs named: tritonclient asks for every output in binary.
    result = c.infer(model, inputs)
    for o in case["outputs"]:
        assert result.as_numpy(o["name"]).shape == tuple(o["shape"]), o["name"]

    try:
        c.get_model_metadata("no-such-model")
        raise AssertionError("unknown model answered")
    except InferenceServerException as e:
        assert "not found" in str(e), e
    first = case["inputs"][0]
    bad = make_input(m, protocol, first["name"], np.zeros((1, 3), dtype=NP[first["datatype"]]), first["datatype"], binary)
    try:
        c.infer(model, [bad])
        raise AssertionError("a wrong shape was accepted")
    except InferenceServerException as e:
        assert "shape" in str(e), e
    assert c.is_server_live(), "server died after a bad request"


def check_echo(m, protocol, url, binary):
    c = m.InferenceServerClient(url=url)
    f32 = np.array([np.nan, np.inf, -np.inf, -0.0, 1.5, np.finfo(np.float32).max], dtype=np.float32)
    i64 = np.array([np.iinfo(np.int64).min, -1, 0, 1, 2**53 + 1, np.iinfo(np.int64).max], dtype=np.int64)
    text = np.array(["héllo".encode(), b"", b"two words", "日本".encode(), b"x", b"\"quoted\""], dtype=np.object_)
    inputs = [
        make_input(m, protocol, "f32", f32, "FP32", binary),
        make_input(m, protocol, "i64", i64, "INT64", binary),
        make_input(m, protocol, "text", text, "BYTES", binary),
    ]
    outputs = [make_output(m, protocol, n, binary) for n in ["f32_out", "i64_out", "text_out"]]
    r = c.infer("echo", inputs, outputs=outputs)
    got = r.as_numpy("f32_out")
    assert got.dtype == np.float32, got.dtype
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == -np.inf, got
    np.testing.assert_array_equal(got[3:], f32[3:])
    np.testing.assert_array_equal(r.as_numpy("i64_out"), i64)
    words = [w if isinstance(w, bytes) else w.encode() for w in r.as_numpy("text_out")]
    assert words == list(text), (words, list(text))
    if protocol == "grpc":
        check_stream(c, inputs, outputs, f32)


def check_stream(c, inputs, outputs, f32):
    """Triton's streaming extension: answers in order, errors in-band."""
    import queue

    answers = queue.Queue()
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    for k in range(3):
        c.async_stream_infer("echo", inputs, outputs=outputs, request_id=f"s{k}")
    c.async_stream_infer("no-such-model", inputs, request_id="bad")
    got = [answers.get(timeout=30) for _ in range(4)]
    c.stop_stream()
    for k, (result, error) in enumerate(got[:3]):
        assert error is None, error
        assert result.get_response().id == f"s{k}", result.get_response().id
        np.testing.assert_array_equal(result.as_numpy("f32_out")[3:], f32[3:])
    assert got[3][0] is None and "not found" in str(got[3][1]), got[3]


def check_repository(m, protocol, url, model):
    """The model repository extension through tritonclient's own calls."""
    c = m.InferenceServerClient(url=url)
    index = metadata(c, protocol, c.get_model_repository_index)
    models = index["models"] if protocol == "grpc" else index
    assert {"name": model, "version": "1", "state": "READY"} in models, index
    c.unload_model(model)
    assert not c.is_model_ready(model), "an unloaded model is ready"
    c.load_model(model)
    assert c.is_model_ready(model), "a loaded model is not ready"
    config = metadata(c, protocol, c.get_model_config, model)
    if protocol == "grpc":
        config = config["config"]
    assert config["name"] == model and config["max_batch_size"] > 0, config
    assert config["input"][0]["data_type"] == "TYPE_FP32", config
    try:
        c.load_model("no-such-model")
        raise AssertionError("an unknown model loaded")
    except InferenceServerException as e:
        assert "no model" in str(e), e


def main():
    protocol, url, model, case_path = sys.argv[1:5]
    echo = sys.argv[5] if len(sys.argv) > 5 else None
    assert protocol in ("http", "grpc"), protocol
    with open(case_path) as f:
        case = json.load(f)
    m = client_module(protocol)
    modes = [False, True] if protocol == "http" else [True]
    for binary in modes:
        check_case(m, protocol, url, model, case, binary)
        if echo:
            check_echo(m, protocol, echo, binary)
    check_repository(m, protocol, url, model)
    print("ok")


if __name__ == "__main__":
    main()
