//! HCL2 `dynamic` blocks, as Nomad takes them anywhere a block may repeat:
//! `dynamic "port" { for_each = ..., iterator = p, labels = [...],
//! content { ... } }` becomes one `port` block per element, expanded
//! before the job is decoded so the rest of the reader sees plain blocks.
//! The iterator (the block type unless `iterator` names another) is
//! `NAME.key` and `NAME.value` in `labels` and `content`; its uses are
//! replaced by the element's value, so every other expression keeps its
//! place in the file for errors.

use super::expr::{describe, literal};
use super::{Decoder, LISTS};
use ::hcl::Value;
use hcl_edit::expr::{Expression, ForExpr};
use hcl_edit::structure::{Block, BlockLabel, Body, Structure};
use hcl_edit::visit_mut::{VisitMut, visit_block_mut, visit_expr_mut, visit_for_expr_mut};
use hcl_edit::{Decorated, Ident, Span};

/// The most blocks `dynamic` may make in one job file.
const MAX_BLOCKS: usize = 10_000;

impl Decoder<'_> {
    /// `block` with every `dynamic` block in it expanded, or `None` when
    /// it has none.
    pub(super) fn expand_dynamic(&mut self, block: &Block) -> Option<Block> {
        if !has_dynamic(&block.body) {
            return None;
        }
        let mut out = block.clone();
        let mut made = 0;
        self.expand_body(&mut out.body, block.ident.as_str(), &mut made);
        Some(out)
    }

    fn expand_body(&mut self, body: &mut Body, kind: &str, made: &mut usize) {
        let mut i = 0;
        while i < body.len() {
            let Some(Structure::Block(b)) = body.get_mut(i) else {
                i += 1;
                continue;
            };
            if b.ident.as_str() != "dynamic" {
                let ident = b.ident.as_str().to_string();
                self.expand_body(&mut b.body, &ident, made);
                i += 1;
                continue;
            }
            let Structure::Block(d) = body.remove(i) else {
                continue;
            };
            for mut made_block in self.dynamic(&d, kind, made) {
                let ident = made_block.ident.as_str().to_string();
                self.expand_body(&mut made_block.body, &ident, made);
                body.insert(i, made_block);
                i += 1;
            }
        }
    }

    /// The blocks one `dynamic` block stands for.
    fn dynamic(&mut self, d: &Block, kind: &str, made: &mut usize) -> Vec<Block> {
        let Some(label) = self.label(d, "dynamic") else {
            return Vec::new();
        };
        let field = format!("{kind}.dynamic.{label}");
        let Ok(ident) = Ident::try_new(label.as_str()) else {
            self.error(d.span(), &field, format!("`{label}` is not a block name"));
            return Vec::new();
        };
        let (mut for_each, mut iterator, mut labels, mut content) = (None, None, None, None);
        for s in d.body.iter() {
            match s {
                Structure::Attribute(a) => match a.key.as_str() {
                    "for_each" => for_each = Some(a),
                    "iterator" => iterator = Some(a),
                    "labels" => labels = Some(a),
                    other => self.error(
                        a.key.span(),
                        &format!("{field}.{other}"),
                        format!(
                            "unknown attribute `{other}` in a dynamic block: it takes for_each, iterator, labels and a content block"
                        ),
                    ),
                },
                Structure::Block(b) if b.ident.as_str() == "content" && content.is_none() => {
                    if !b.labels.is_empty() {
                        self.error(
                            b.span(),
                            &format!("{field}.content"),
                            "a `content` block takes no label",
                        );
                    }
                    content = Some(b);
                }
                Structure::Block(b) => {
                    let other = b.ident.as_str();
                    let message = if other == "content" {
                        "a dynamic block takes one `content` block".to_string()
                    } else {
                        format!(
                            "unknown block `{other}` in a dynamic block: it takes for_each, iterator, labels and a content block"
                        )
                    };
                    self.error(b.ident.span(), &format!("{field}.{other}"), message);
                }
            }
        }
        let Some(content) = content else {
            self.error(
                d.span(),
                &field,
                "a dynamic block needs a `content` block: the body of each block it makes",
            );
            return Vec::new();
        };
        let Some(for_each) = for_each else {
            self.error(
                d.span(),
                &field,
                "a dynamic block needs `for_each`: the list or map to make one block per element of",
            );
            return Vec::new();
        };
        let name = match iterator.map(|a| &a.value) {
            None => label.clone(),
            Some(Expression::Variable(v)) => v.as_str().to_string(),
            Some(other) => {
                self.error(
                    other.span(),
                    &format!("{field}.iterator"),
                    "`iterator` is a name, like `iterator = p`",
                );
                return Vec::new();
            }
        };
        let Some(items) = self.eval(&for_each.value, &format!("{field}.for_each")) else {
            return Vec::new();
        };
        let items: Vec<(Value, Value)> = match items {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Value::from(i), v))
                .collect(),
            Value::Object(m) => {
                // In key order, as cty walks a map.
                let mut pairs: Vec<(String, Value)> = m.into_iter().collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                pairs
                    .into_iter()
                    .map(|(k, v)| (Value::from(k), v))
                    .collect()
            }
            other => {
                self.error(
                    for_each.value.span(),
                    &format!("{field}.for_each"),
                    format!(
                        "for_each must be a list, set or map, not {}",
                        describe(&other)
                    ),
                );
                return Vec::new();
            }
        };
        let want = LISTS
            .iter()
            .find(|l| l.0 == kind && l.1 == label)
            .map(|l| usize::from(l.3.is_some()));
        let mut out = Vec::new();
        for (key, value) in items {
            *made += 1;
            if *made > MAX_BLOCKS {
                self.error(
                    d.span(),
                    &field,
                    format!("dynamic blocks would make more than {MAX_BLOCKS} blocks"),
                );
                return out;
            }
            let mut each = ::hcl::Map::new();
            each.insert("key".to_string(), key);
            each.insert("value".to_string(), value);
            let mut subst = Subst {
                name: &name,
                value: literal(Value::Object(each)),
                bound: Vec::new(),
            };
            let mut block = content.clone();
            *block.ident.value_mut() = ident.clone();
            subst.visit_body_mut(&mut block.body);
            let mut names = Vec::new();
            if let Some(a) = labels {
                let mut expr = a.value.clone();
                subst.visit_expr_mut(&mut expr);
                let at = format!("{field}.labels");
                let Some(v) = self.eval(&expr, &at) else {
                    return out;
                };
                let texts: Option<Vec<String>> = match &v {
                    Value::Array(items) => items.iter().map(super::expr::as_string).collect(),
                    _ => None,
                };
                let Some(texts) = texts else {
                    self.error(
                        a.value.span(),
                        &at,
                        format!("labels must be a list of strings, not {}", describe(&v)),
                    );
                    return out;
                };
                names = texts;
            }
            if let Some(want) = want
                && names.len() != want
            {
                let span = labels.map_or_else(|| d.span(), |a| a.value.span());
                let message = if want == 1 {
                    format!(
                        "each `{label}` block needs one label, its name: give `labels = [...]` one element"
                    )
                } else {
                    format!("a `{label}` block takes no label: leave out `labels`")
                };
                self.error(span, &format!("{field}.labels"), message);
                return out;
            }
            block.labels = names
                .into_iter()
                .map(|n| BlockLabel::String(Decorated::new(n)))
                .collect();
            out.push(block);
        }
        out
    }
}

fn has_dynamic(body: &Body) -> bool {
    body.blocks()
        .any(|b| b.ident.as_str() == "dynamic" || has_dynamic(&b.body))
}

/// Replaces the iterator's name by its value for one element, except where
/// a `for` expression or a nested `dynamic` binds the same name.
struct Subst<'a> {
    name: &'a str,
    value: Expression,
    bound: Vec<String>,
}

impl VisitMut for Subst<'_> {
    fn visit_expr_mut(&mut self, node: &mut Expression) {
        if let Expression::Variable(v) = node
            && v.as_str() == self.name
            && !self.bound.iter().any(|b| b == self.name)
        {
            *node = self.value.clone();
            return;
        }
        visit_expr_mut(self, node);
    }

    fn visit_for_expr_mut(&mut self, node: &mut ForExpr) {
        let intro = &node.intro;
        let names: Vec<String> = intro
            .key_var
            .iter()
            .chain(std::iter::once(&intro.value_var))
            .map(|v| v.as_str().to_string())
            .collect();
        // The collection is outside the `for`'s own names.
        self.visit_expr_mut(&mut node.intro.collection_expr);
        let n = self.bound.len();
        self.bound.extend(names);
        let collection = std::mem::replace(&mut node.intro.collection_expr, Expression::null());
        visit_for_expr_mut(self, node);
        node.intro.collection_expr = collection;
        self.bound.truncate(n);
    }

    fn visit_block_mut(&mut self, node: &mut Block) {
        if node.ident.as_str() != "dynamic" {
            return visit_block_mut(self, node);
        }
        let inner = node
            .body
            .get_attribute("iterator")
            .and_then(|a| match &a.value {
                Expression::Variable(v) => Some(v.as_str().to_string()),
                _ => None,
            })
            .or_else(|| node.labels.first().map(|l| l.as_str().to_string()));
        let shadows = inner.as_deref() == Some(self.name);
        for mut s in node.body.iter_mut() {
            if let Some(mut a) = s.as_attribute_mut() {
                let key = a.get().key.as_str().to_string();
                if key == "for_each" || (!shadows && key == "labels") {
                    self.visit_expr_mut(a.value_mut());
                }
            } else if let Some(b) = s.as_block_mut()
                && !shadows
            {
                self.visit_block_mut(b);
            }
        }
    }
}
