# The iris classifier (scikit-learn, converted with skl2onnx) served over the
# Open Inference Protocol. Used by crates/edge/tests/model.rs.
#
#   edge job run examples/model.hcl
#   curl -d '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}' \
#     localhost:PORT/v2/models/iris/infer

job "iris" {
  model "iris" {
    # Relative to this file: examples/models/iris.onnx.
    source = "models/iris.onnx"
    sha256 = "564c8ff31886c0c425a629c4cc430a37a6b28b94083b3a113729f02257da0ea7"

    resources {
      cpu    = 200
      memory = 64
    }

    batching {
      max_batch_size = 32
      max_delay      = "2ms"
    }

    # Also over gRPC (tritonclient.grpc), on a second port "grpc".
    grpc {}
  }
}
