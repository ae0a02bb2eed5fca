//! Operator configurations tract 0.23 loads and runs but computes wrongly
//! (found by comparing with the ONNX reference evaluator, see
//! tests/conformance.rs): refused at load rather than answered wrongly.

use std::collections::HashMap;
use tract_onnx::data_resolver::FopenDataResolver;
use tract_onnx::pb::{GraphProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;

/// The first node of `graph` tract would compute wrongly, as the operator,
/// its configuration and what goes wrong.
pub(crate) fn known_wrong(graph: &GraphProto) -> Option<String> {
    let consts = Constants::of(graph);
    graph.node.iter().find_map(|n| {
        let why = match n.op_type.as_str() {
            "Celu" => float_attr(n, "alpha", 1.0).map(|a| {
                format!("Celu with alpha={a}: tract 0.23 leaves the alpha factor out of the negative part")
            }),
            "Swish" => float_attr(n, "alpha", 1.0).map(|a| {
                format!("Swish with alpha={a}: tract 0.23 computes x*sigmoid(x) whatever alpha is")
            }),
            "Attention" => attention(n),
            "Equal" => reduced_compared_with_infinity(n, &consts),
            _ => None,
        }?;
        Some(if n.name.is_empty() {
            why
        } else {
            format!("{why} (node {:?})", n.name)
        })
    })
}

/// The attribute `name` when it is given and differs from `default`.
fn float_attr(n: &NodeProto, name: &str, default: f32) -> Option<f32> {
    n.get_attr_opt::<f32>(name)
        .ok()
        .flatten()
        .filter(|v| *v != default)
}

fn int_attr(n: &NodeProto, name: &str, default: i64) -> i64 {
    n.get_attr_opt::<i64>(name)
        .ok()
        .flatten()
        .unwrap_or(default)
}

fn attention(n: &NodeProto) -> Option<String> {
    let past_key = n.input.get(4).is_some_and(|i| !i.is_empty());
    if int_attr(n, "is_causal", 0) != 0 && past_key {
        return Some(
            "Attention with is_causal=1 and a past_key: tract 0.23 aligns the causal mask \
             to the top left, ONNX shifts it right by the past length"
                .to_string(),
        );
    }
    ["left_window_size", "right_window_size"]
        .into_iter()
        .find(|a| int_attr(n, a, -1) != -1)
        .map(|a| format!("Attention with {a}: tract 0.23 ignores the window"))
}

/// `Equal(ReduceMax(x), -inf)` is how a fully masked row is told apart (the
/// ONNX Attention function does it); tract's ReduceMax of a row of -inf is
/// the lowest finite number (ReduceMin's of +inf the highest), so the test
/// is never true.
fn reduced_compared_with_infinity(n: &NodeProto, consts: &Constants) -> Option<String> {
    let [a, b] = n.input.as_slice() else {
        return None;
    };
    let reduced = |x: &str| {
        consts
            .producer(x)
            .filter(|p| p.op_type == "ReduceMax" || p.op_type == "ReduceMin")
            .map(|p| p.op_type.clone())
    };
    let (op, other) = match (reduced(a), reduced(b)) {
        (Some(op), _) => (op, b),
        (None, Some(op)) => (op, a),
        (None, None) => return None,
    };
    consts.is_infinite(other).then(|| {
        format!(
            "Equal of {op} and an infinity: tract 0.23's {op} over a row of infinities \
             is the largest finite number, so the comparison is false"
        )
    })
}

/// Where each value of a graph comes from, to follow constants.
struct Constants<'a> {
    initializers: HashMap<&'a str, &'a TensorProto>,
    producers: HashMap<&'a str, &'a NodeProto>,
}

impl<'a> Constants<'a> {
    fn of(graph: &'a GraphProto) -> Constants<'a> {
        Constants {
            initializers: graph
                .initializer
                .iter()
                .map(|t| (t.name.as_str(), t))
                .collect(),
            producers: graph
                .node
                .iter()
                .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
                .collect(),
        }
    }

    fn producer(&self, value: &str) -> Option<&'a NodeProto> {
        self.producers.get(value).copied()
    }

    /// Whether `value` is a constant made only of infinities, seen through
    /// a few casts (a bound, as a malformed graph may loop).
    fn is_infinite(&self, value: &str) -> bool {
        self.is_infinite_within(value, 8)
    }

    fn is_infinite_within(&self, value: &str, casts: usize) -> bool {
        let tensor = if let Some(t) = self.initializers.get(value) {
            tract_onnx::tensor::load_tensor(&FopenDataResolver, t, None).ok()
        } else {
            match self.producer(value) {
                Some(p) if ["Cast", "CastLike", "Identity"].contains(&p.op_type.as_str()) => {
                    return casts > 0
                        && p.input
                            .first()
                            .is_some_and(|i| self.is_infinite_within(i, casts - 1));
                }
                Some(p) if p.op_type == "Constant" => {
                    if let Ok(Some(t)) = p.get_attr_opt::<&TensorProto>("value") {
                        tract_onnx::tensor::load_tensor(&FopenDataResolver, t, None).ok()
                    } else {
                        float_attr(p, "value_float", 0.0).map(tensor0)
                    }
                }
                _ => None,
            }
        };
        tensor
            .and_then(|t| t.cast_to::<f64>().ok().map(|t| t.into_owned()))
            .and_then(|t| {
                t.to_plain_array_view::<f64>()
                    .ok()
                    .map(|v| !v.is_empty() && v.iter().all(|x| x.is_infinite()))
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::AttributeProto;
    use tract_onnx::pb::attribute_proto::AttributeType;

    fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.to_string(),
            input: inputs.iter().map(|i| i.to_string()).collect(),
            output: vec![output.to_string()],
            attribute,
            ..Default::default()
        }
    }

    fn float(name: &str, f: f32) -> AttributeProto {
        AttributeProto {
            name: name.to_string(),
            f,
            r#type: AttributeType::Float as i32,
            ..Default::default()
        }
    }

    fn int(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: name.to_string(),
            i,
            r#type: AttributeType::Int as i32,
            ..Default::default()
        }
    }

    fn check(nodes: Vec<NodeProto>) -> Option<String> {
        known_wrong(&GraphProto {
            node: nodes,
            ..Default::default()
        })
    }

    #[test]
    fn celu_and_swish_only_with_their_default_alpha() {
        assert_eq!(check(vec![node("Celu", &["x"], "y", vec![])]), None);
        assert_eq!(
            check(vec![node("Celu", &["x"], "y", vec![float("alpha", 1.0)])]),
            None
        );
        let why = check(vec![node("Swish", &["x"], "y", vec![float("alpha", 0.5)])]).unwrap();
        assert!(why.starts_with("Swish with alpha=0.5: "), "{why}");
    }

    #[test]
    fn causal_attention_only_without_a_past_and_no_windows() {
        let causal = || vec![int("is_causal", 1)];
        let attention = |inputs: &[&str], attrs| check(vec![node("Attention", inputs, "y", attrs)]);
        assert_eq!(attention(&["q", "k", "v"], causal()), None);
        assert_eq!(attention(&["q", "k", "v", "mask", "", ""], causal()), None);
        assert_eq!(attention(&["q", "k", "v", "", "pk", "pv"], vec![]), None);
        let why = attention(&["q", "k", "v", "", "pk", "pv"], causal()).unwrap();
        assert!(why.contains("is_causal=1 and a past_key"), "{why}");
        assert_eq!(
            attention(&["q", "k", "v"], vec![int("left_window_size", -1)]),
            None
        );
        let why = attention(&["q", "k", "v"], vec![int("right_window_size", 2)]).unwrap();
        assert!(why.contains("right_window_size"), "{why}");
    }

    #[test]
    fn a_reduced_max_compared_with_an_infinity_through_casts() {
        let guard = |constant: NodeProto| {
            check(vec![
                node("ReduceMax", &["x"], "m", vec![]),
                constant,
                node("CastLike", &["c", "x"], "ct", vec![]),
                node("Equal", &["m", "ct"], "y", vec![]),
            ])
        };
        let why = guard(node(
            "Constant",
            &[],
            "c",
            vec![float("value_float", f32::NEG_INFINITY)],
        ))
        .unwrap();
        assert!(
            why.starts_with("Equal of ReduceMax and an infinity"),
            "{why}"
        );
        assert_eq!(
            guard(node("Constant", &[], "c", vec![float("value_float", 2.0)])),
            None
        );
        // A graph whose cast feeds itself is malformed, not a reason to loop.
        assert_eq!(guard(node("Identity", &["c"], "c", vec![])), None);
    }
}
