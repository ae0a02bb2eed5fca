//! One inference, whatever protocol brought it: decode and check the
//! request, queue it for a batch, and keep the outputs it asked for. REST
//! (JSON and binary) and gRPC all go through [`infer`].

use crate::batch::{Batcher, Incoming};
use crate::codec::{self, Request};
use crate::error::ModelError;
use crate::model::Model;
use tract_onnx::prelude::Tensor;

/// The model's results and which of them to answer, in order.
#[derive(Debug)]
pub struct Answer {
    pub id: Option<String>,
    pub results: Vec<Tensor>,
    pub outputs: Vec<usize>,
}

impl Answer {
    pub fn outputs<'a>(&'a self, model: &'a Model) -> Result<Vec<codec::Output<'a>>, ModelError> {
        codec::outputs(model, &self.results, &self.outputs)
    }
}

/// `incoming` is taken when the request arrived, before it was parsed, so
/// a batch being gathered waits for it.
pub async fn infer(
    model: &Model,
    batcher: &Batcher,
    incoming: Incoming,
    mut req: Request,
) -> Result<Answer, ModelError> {
    let id = req.id.take();
    let decoded = codec::decode(model, req)?;
    let results = batcher
        .infer(decoded.inputs, decoded.rows, incoming)
        .await?;
    Ok(Answer {
        id,
        results,
        outputs: decoded.outputs,
    })
}
