//! ONNX operator configurations tract 0.23 loads and runs but computes
//! wrongly (found by comparing with the ONNX reference evaluator, see
//! tests/conformance.rs): mended in the graph where an exact rewrite exists,
//! refused at load otherwise, rather than answered wrongly.

use std::collections::HashMap;
use tract_onnx::data_resolver::FopenDataResolver;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;

/// The first node of `graph` (or of the bodies of its If, Loop and Scan
/// nodes) tract would compute wrongly, as the operator, its configuration and
/// what goes wrong.
pub(crate) fn known_wrong(graph: &GraphProto) -> Option<String> {
    graph.node.iter().find_map(|n| {
        if let Some(why) = n
            .attribute
            .iter()
            .flat_map(|a| a.g.iter().chain(&a.graphs))
            .find_map(known_wrong)
        {
            return Some(why);
        }
        let why = match n.op_type.as_str() {
            "Celu" => float_attr(n, "alpha", 1.0).map(|a| {
                format!("Celu with alpha={a}: tract 0.23 leaves the alpha factor out of the negative part")
            }),
            "Swish" => float_attr(n, "alpha", 1.0).map(|a| {
                format!("Swish with alpha={a}: tract 0.23 computes x*sigmoid(x) whatever alpha is")
            }),
            "Attention" => attention(n),
            "RNN" | "GRU" | "LSTM" => (str_attr(n, "direction") == Some("reverse")).then(|| {
                format!(
                    "{} with direction=reverse: tract 0.23 runs a single direction forward",
                    n.op_type
                )
            }),
            "SpaceToDepth" => (str_attr(n, "mode") == Some("CRD"))
                .then(|| "SpaceToDepth with mode=CRD: tract 0.23 always uses DCR".to_string()),
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

fn str_attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a str> {
    n.get_attr_opt::<&str>(name).ok().flatten()
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
/// ONNX Attention function does it), but tract's ReduceMax of a row of -inf
/// is the lowest finite number (ReduceMin's of +inf the highest), so the
/// test is never true and the row comes out NaN instead of 0. Each such
/// Equal becomes the exact `ReduceMax(Cast(Not(IsInf(x, -inf only)))) == 0`
/// ("no element other than -inf"), over the reduction's own axes. Returns
/// how many were rewritten.
pub(crate) fn mend(graph: &mut GraphProto) -> usize {
    let consts = Constants::of(graph);
    let mut found = Vec::new();
    for (ix, n) in graph.node.iter().enumerate() {
        if n.op_type != "Equal" || n.input.len() != 2 {
            continue;
        }
        for (reduced, other) in [(0, 1), (1, 0)] {
            let Some(r) = consts.producer(&n.input[reduced]) else {
                continue;
            };
            let wanted = match r.op_type.as_str() {
                "ReduceMax" => f64::NEG_INFINITY,
                "ReduceMin" => f64::INFINITY,
                _ => continue,
            };
            if !r.input.is_empty() && consts.infinity(&n.input[other]) == Some(wanted) {
                found.push((ix, r.clone()));
                break;
            }
        }
    }
    drop(consts);
    // From the last, so the indices before it stay valid.
    for (ix, reduce) in found.iter().rev() {
        let equal = &graph.node[*ix];
        let p = format!(
            "{}.edge_all_infinite",
            equal.output.first().map_or("", |o| o.as_str())
        );
        let (positive, negative) = if reduce.op_type == "ReduceMax" {
            (0, 1)
        } else {
            (1, 0)
        };
        let nodes = vec![
            NodeProto {
                op_type: "IsInf".to_string(),
                name: format!("{p}.isinf"),
                input: vec![reduce.input[0].clone()],
                output: vec![format!("{p}.isinf")],
                attribute: vec![
                    int_attribute("detect_positive", positive),
                    int_attribute("detect_negative", negative),
                ],
                ..Default::default()
            },
            NodeProto {
                op_type: "Not".to_string(),
                name: format!("{p}.not"),
                input: vec![format!("{p}.isinf")],
                output: vec![format!("{p}.not")],
                ..Default::default()
            },
            NodeProto {
                op_type: "Cast".to_string(),
                name: format!("{p}.cast"),
                input: vec![format!("{p}.not")],
                output: vec![format!("{p}.cast")],
                attribute: vec![int_attribute("to", DataType::Float as i64)],
                ..Default::default()
            },
            NodeProto {
                op_type: "ReduceMax".to_string(),
                name: format!("{p}.any"),
                input: std::iter::once(format!("{p}.cast"))
                    .chain(reduce.input.iter().skip(1).cloned())
                    .collect(),
                output: vec![format!("{p}.any")],
                attribute: reduce.attribute.clone(),
                ..Default::default()
            },
        ];
        graph.initializer.push(TensorProto {
            name: format!("{p}.zero"),
            data_type: DataType::Float as i32,
            float_data: vec![0.0],
            ..Default::default()
        });
        graph.node[*ix].input = vec![format!("{p}.any"), format!("{p}.zero")];
        graph.node.splice(*ix..*ix, nodes);
    }
    found.len()
}

fn int_attribute(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        i,
        r#type: AttributeType::Int as i32,
        ..Default::default()
    }
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

    /// The infinity `value` is made of when it is a constant of one
    /// infinity only, seen through a few casts (a bound, as a malformed
    /// graph may loop).
    fn infinity(&self, value: &str) -> Option<f64> {
        self.infinity_within(value, 8)
    }

    fn infinity_within(&self, value: &str, casts: usize) -> Option<f64> {
        let tensor = if let Some(t) = self.initializers.get(value) {
            tract_onnx::tensor::load_tensor(&FopenDataResolver, t, None).ok()
        } else {
            match self.producer(value) {
                Some(p) if ["Cast", "CastLike", "Identity"].contains(&p.op_type.as_str()) => {
                    let input = p.input.first().filter(|_| casts > 0)?;
                    return self.infinity_within(input, casts - 1);
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
        }?;
        let values = tensor.cast_to::<f64>().ok()?.into_owned();
        let values = values.to_plain_array_view::<f64>().ok()?;
        let first = *values.iter().next()?;
        (first.is_infinite() && values.iter().all(|v| *v == first)).then_some(first)
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
    fn bodies_of_control_flow_are_checked() {
        let body = GraphProto {
            node: vec![node("Celu", &["x"], "y", vec![float("alpha", 3.0)])],
            ..Default::default()
        };
        let branch = AttributeProto {
            name: "then_branch".to_string(),
            g: Some(body),
            r#type: AttributeType::Graph as i32,
            ..Default::default()
        };
        let why = check(vec![node("If", &["c"], "y", vec![branch])]).unwrap();
        assert!(why.starts_with("Celu with alpha=3"), "{why}");
    }

    #[test]
    fn recurrent_reverse_and_crd_space_to_depth() {
        let attr = |name: &str, s: &str| AttributeProto {
            name: name.to_string(),
            s: s.as_bytes().to_vec(),
            r#type: AttributeType::String as i32,
            ..Default::default()
        };
        let why = check(vec![node(
            "GRU",
            &["x", "w", "r"],
            "y",
            vec![attr("direction", "reverse")],
        )]);
        assert!(why.unwrap().starts_with("GRU with direction=reverse"));
        let both = vec![attr("direction", "bidirectional")];
        assert_eq!(check(vec![node("LSTM", &["x", "w", "r"], "y", both)]), None);
        let why = check(vec![node(
            "SpaceToDepth",
            &["x"],
            "y",
            vec![attr("mode", "CRD")],
        )]);
        assert!(why.unwrap().starts_with("SpaceToDepth with mode=CRD"));
    }

    fn guard(reduce: &str, constant: NodeProto) -> GraphProto {
        GraphProto {
            node: vec![
                node(reduce, &["x", "axes"], "m", vec![int("keepdims", 1)]),
                constant,
                node("CastLike", &["c", "x"], "ct", vec![]),
                node("Equal", &["m", "ct"], "y", vec![]),
            ],
            ..Default::default()
        }
    }

    fn constant(v: f32) -> NodeProto {
        node("Constant", &[], "c", vec![float("value_float", v)])
    }

    #[test]
    fn a_reduced_max_compared_with_minus_infinity_is_rewritten() {
        let mut g = guard("ReduceMax", constant(f32::NEG_INFINITY));
        assert_eq!(mend(&mut g), 1);
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "ReduceMax",
                "Constant",
                "CastLike",
                "IsInf",
                "Not",
                "Cast",
                "ReduceMax",
                "Equal"
            ]
        );
        let any = &g.node[6];
        assert_eq!(any.input, ["y.edge_all_infinite.cast", "axes"]);
        assert_eq!(int_attr(any, "keepdims", 0), 1);
        assert_eq!(int_attr(&g.node[3], "detect_positive", 1), 0);
        assert_eq!(
            g.node[7].input,
            ["y.edge_all_infinite.any", "y.edge_all_infinite.zero"]
        );
        assert_eq!(g.initializer[0].float_data, [0.0]);
    }

    #[test]
    fn other_comparisons_are_left_alone() {
        for (reduce, c) in [
            ("ReduceMax", constant(f32::INFINITY)),
            ("ReduceMin", constant(f32::NEG_INFINITY)),
            ("ReduceMax", constant(2.0)),
            ("ReduceSum", constant(f32::NEG_INFINITY)),
            // A graph whose cast feeds itself is malformed, not a reason to loop.
            ("ReduceMax", node("Identity", &["c"], "c", vec![])),
        ] {
            let mut g = guard(reduce, c);
            assert_eq!(mend(&mut g), 0, "{reduce}");
            assert_eq!(g.node.len(), 4);
        }
        assert_eq!(mend(&mut guard("ReduceMin", constant(f32::INFINITY))), 1);
    }
}
