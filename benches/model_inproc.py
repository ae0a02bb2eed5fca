#!/usr/bin/env python3
"""The in-process floor: onnxruntime called directly from Python on the same
one-row input the servers get, at concurrency 1 and with N threads.

usage: model_inproc.py MODEL.onnx REQUEST.json CONCURRENCY SECONDS
Prints one JSON line like the load generator's.
"""

import json
import sys
import threading
import time

import numpy as np
import onnxruntime as ort

NP = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}


def main():
    path, req_path, conc, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    with open(req_path) as f:
        req = json.load(f)
    feeds = {
        i["name"]: np.array(i["data"], dtype=NP[i["datatype"]]).reshape(i["shape"])
        for i in req["inputs"]
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    for _ in range(200):
        sess.run(None, feeds)
    lat = [[] for _ in range(conc)]
    stop = time.perf_counter() + secs

    def worker(out):
        while time.perf_counter() < stop:
            t = time.perf_counter()
            sess.run(None, feeds)
            out.append(time.perf_counter() - t)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(lat[i],)) for i in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    all_lat = sorted(x for l in lat for x in l)
    n = len(all_lat)
    print(
        json.dumps(
            {
                "concurrency": conc,
                "requests": n,
                "errors": 0,
                "rps": round(n / elapsed, 1),
                "p50_ms": round(all_lat[n // 2] * 1e3, 4),
                "p99_ms": round(all_lat[min(n - 1, int(n * 0.99))] * 1e3, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
