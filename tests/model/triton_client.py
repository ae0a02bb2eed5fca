#!/usr/bin/env python3
"""Drives `edge model serve` with NVIDIA's tritonclient (HTTP), a real Open
Inference Protocol client: liveness, readiness, server and model metadata,
an inference checked against the stored onnxruntime reference, and an error.

usage: triton_client.py HOST:PORT MODEL CASE.json
Exits 0 and prints "ok" when everything matches.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

NP = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def main():
    url, model, case_path = sys.argv[1:4]
    with open(case_path) as f:
        case = json.load(f)
    c = httpclient.InferenceServerClient(url=url)
    assert c.is_server_live(), "server not live"
    assert c.is_server_ready(), "server not ready"
    assert c.is_model_ready(model), "model not ready"
    meta = c.get_server_metadata()
    assert meta["name"] == "edge", meta
    mm = c.get_model_metadata(model)
    assert mm["name"] == model and mm["platform"] == "onnx", mm
    assert [i["name"] for i in mm["inputs"]] == [i["name"] for i in case["inputs"]], mm

    inputs = []
    for i in case["inputs"]:
        arr = np.array(i["data"], dtype=NP[i["datatype"]]).reshape(i["shape"])
        t = httpclient.InferInput(i["name"], list(arr.shape), i["datatype"])
        t.set_data_from_numpy(arr, binary_data=False)
        inputs.append(t)
    outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=False) for o in case["outputs"]]
    result = c.infer(model, inputs, outputs=outputs, request_id="triton-1")
    assert result.get_response()["id"] == "triton-1", result.get_response()
    for o in case["outputs"]:
        got = result.as_numpy(o["name"])
        want = np.array(o["data"], dtype=NP[o["datatype"]]).reshape(o["shape"])
        assert got.shape == want.shape, (o["name"], got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=case["rtol"], atol=case["atol"])

    try:
        c.get_model_metadata("no-such-model")
        raise AssertionError("unknown model answered")
    except InferenceServerException as e:
        assert "not found" in str(e), e
    bad = httpclient.InferInput(case["inputs"][0]["name"], [1, 3], case["inputs"][0]["datatype"])
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=NP[case["inputs"][0]["datatype"]]), binary_data=False)
    try:
        c.infer(model, [bad])
        raise AssertionError("a wrong shape was accepted")
    except InferenceServerException as e:
        assert "shape" in str(e), e
    assert c.is_server_live(), "server died after a bad request"
    print("ok")


if __name__ == "__main__":
    main()
