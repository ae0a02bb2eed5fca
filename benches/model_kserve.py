#!/usr/bin/env python3
"""KServe's Python model server (V2 / Open Inference Protocol, REST and
gRPC) wrapping onnxruntime: the baseline `benches/model.sh` compares
`edge model serve` to. Outputs go back in binary when the request asks
(`binary_data`), as a binary-extension client expects.

usage: model_kserve.py MODEL.onnx NAME HTTP_PORT GRPC_PORT
"""

import sys
import uuid

import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.utils.utils import from_np_dtype


class OnnxModel(Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.sess.get_outputs()]
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        outputs = []
        for name, arr in zip(self.names, self.sess.run(self.names, feeds)):
            out = InferOutput(name=name, shape=list(arr.shape), datatype=from_np_dtype(arr.dtype))
            out.set_data_from_numpy(arr, binary_data=False)
            outputs.append(out)
        return InferResponse(
            model_name=self.name,
            infer_outputs=outputs,
            response_id=payload.id or str(uuid.uuid4()),
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


if __name__ == "__main__":
    path, name, port, grpc_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ModelServer(
        http_port=port,
        grpc_port=grpc_port,
        workers=1,
        enable_grpc=True,
        enable_latency_logging=False,
    ).start([OnnxModel(name, path)])
