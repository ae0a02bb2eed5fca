//! Expression evaluation for job files: `var.*` and `local.*` are evaluated now, while
//! interpolations the scheduler and agent resolve later (`${attr.*}`,
//! `${node.*}`, `${meta.*}`, `${env.*}`, `${EDGE_*}`, `${NOMAD_*}`) stay as
//! literal text.

use ::hcl::Value;
use ::hcl::eval::{Context, Evaluate};
use hcl_edit::expr::{Expression, Traversal, TraversalOperator};
use hcl_edit::template::Element;
use hcl_edit::visit_mut::{VisitMut, visit_element_mut, visit_traversal_mut};
use hcl_edit::{Span, Spanned};
use std::collections::BTreeSet;
use std::ops::Range;

const RUNTIME_ROOTS: &[&str] = &["attr", "node", "meta", "env"];
const RUNTIME_PREFIXES: &[&str] = &["EDGE_", "NOMAD_"];

/// What expressions may refer to.
pub(super) struct Scope {
    pub(super) ctx: Context<'static>,
    /// `None` where variables may not be used (defaults, var files).
    declared: Option<BTreeSet<String>>,
    /// Declared variables without a usable value: their error is already
    /// reported, so expressions using them are skipped quietly.
    failed: BTreeSet<String>,
    /// Names of `locals`; `None` where locals may not be used (variable
    /// defaults, var files, and locals before they are resolved).
    locals: Option<BTreeSet<String>>,
    /// Locals whose own error is already reported.
    failed_locals: BTreeSet<String>,
}

impl Scope {
    pub(super) fn without_vars() -> Scope {
        Scope {
            ctx: Context::new(),
            declared: None,
            failed: BTreeSet::new(),
            locals: None,
            failed_locals: BTreeSet::new(),
        }
    }

    pub(super) fn with_vars(
        values: ::hcl::Map<String, Value>,
        declared: BTreeSet<String>,
        failed: BTreeSet<String>,
    ) -> Scope {
        let mut ctx = Context::new();
        ctx.declare_var("var", Value::Object(values));
        Scope {
            ctx,
            declared: Some(declared),
            failed,
            locals: None,
            failed_locals: BTreeSet::new(),
        }
    }

    /// Makes `local.NAME` of every name in `names` usable, with the values
    /// of those that have one; the others' errors are already reported.
    pub(super) fn set_locals(
        &mut self,
        values: ::hcl::Map<String, Value>,
        names: BTreeSet<String>,
    ) {
        self.failed_locals = names
            .iter()
            .filter(|n| !values.contains_key(*n))
            .cloned()
            .collect();
        self.ctx.declare_var("local", Value::Object(values));
        self.locals = Some(names);
    }
}

/// The names of the locals `expr` refers to (`local.NAME`).
pub(super) fn local_refs(expr: &Expression) -> BTreeSet<String> {
    struct Refs(BTreeSet<String>);
    impl hcl_edit::visit::Visit for Refs {
        fn visit_traversal(&mut self, node: &Traversal) {
            if let Expression::Variable(root) = &node.expr
                && root.as_str() == "local"
                && let Some(op) = node.operators.first()
                && let TraversalOperator::GetAttr(name) = op.value()
            {
                self.0.insert(name.as_str().to_string());
            }
            hcl_edit::visit::visit_traversal(self, node);
        }
    }
    let mut refs = Refs(BTreeSet::new());
    hcl_edit::visit::Visit::visit_expr(&mut refs, expr);
    refs.0
}

#[derive(Debug)]
pub(super) enum EvalError {
    /// Uses a variable whose own error was reported already.
    Skipped,
    /// Problems found, each at the span of the sub-expression that caused it.
    Problems(Vec<(Option<Range<usize>>, String)>),
}

pub(super) fn eval(expr: &Expression, scope: &Scope) -> Result<Value, EvalError> {
    let mut expr = expr.clone();
    let mut prep = Prepare {
        scope,
        problems: Vec::new(),
        skipped: false,
    };
    prep.visit_expr_mut(&mut expr);
    if !prep.problems.is_empty() {
        return Err(EvalError::Problems(prep.problems));
    }
    if prep.skipped {
        return Err(EvalError::Skipped);
    }
    let span = expr.span();
    ::hcl::Expression::from(expr)
        .evaluate(&scope.ctx)
        .map_err(|e| EvalError::Problems(vec![(span, e.kind().to_string())]))
}

fn is_runtime(expr: &Expression) -> bool {
    match expr {
        Expression::Variable(v) => {
            let name = v.as_str();
            RUNTIME_ROOTS.contains(&name) || RUNTIME_PREFIXES.iter().any(|p| name.starts_with(p))
        }
        Expression::Traversal(t) => is_runtime(&t.expr),
        _ => false,
    }
}

/// Turns runtime interpolations into literal text (re-escaped by hcl-rs when
/// it encodes the template, so evaluation gives back `${...}` unchanged) and
/// checks `var.NAME` and `local.NAME` references against what is declared.
struct Prepare<'a> {
    scope: &'a Scope,
    problems: Vec<(Option<Range<usize>>, String)>,
    skipped: bool,
}

impl Prepare<'_> {
    /// `var.NAME` or `local.NAME`: refused where none may be used, skipped
    /// quietly when its own error was reported, an error when unknown.
    fn check_ref(
        &mut self,
        span: Option<Range<usize>>,
        (known, failed, name): (Option<&BTreeSet<String>>, &BTreeSet<String>, &str),
        not_here: &str,
        unknown: impl FnOnce() -> String,
    ) {
        match known {
            None => self.problems.push((span, not_here.to_string())),
            Some(_) if name.is_empty() => {}
            Some(_) if failed.contains(name) => self.skipped = true,
            Some(known) if !known.contains(name) => self.problems.push((span, unknown())),
            Some(_) => {}
        }
    }
}

impl VisitMut for Prepare<'_> {
    fn visit_element_mut(&mut self, node: &mut Element) {
        if let Element::Interpolation(interp) = node
            && is_runtime(&interp.expr)
        {
            let text = format!("${{{}}}", interp.expr.to_string().trim());
            *node = Element::Literal(Spanned::new(text));
            return;
        }
        visit_element_mut(self, node);
    }

    fn visit_traversal_mut(&mut self, node: &mut Traversal) {
        let scope = self.scope;
        let name = match (&node.expr, node.operators.first().map(|o| o.value())) {
            (Expression::Variable(root), Some(TraversalOperator::GetAttr(name))) => {
                Some((root.as_str(), name.as_str()))
            }
            (Expression::Variable(root), _) => Some((root.as_str(), "")),
            _ => None,
        };
        match name {
            Some(("var", name)) => self.check_ref(
                node.span(),
                (scope.declared.as_ref(), &scope.failed, name),
                "variables cannot be used here",
                || format!("undeclared variable `{name}`: add a `variable \"{name}\"` block"),
            ),
            Some(("local", name)) => self.check_ref(
                node.span(),
                (scope.locals.as_ref(), &scope.failed_locals, name),
                "locals cannot be used here",
                || format!("undefined local `{name}`: add it to a `locals` block"),
            ),
            _ => {}
        }
        visit_traversal_mut(self, node);
    }
}

/// A short description of a value for error messages.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("bool {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// Scalars convert to strings, as in HCL.
pub(super) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whole non-negative numbers, also from numeric strings (HCL converts).
pub(super) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}
