//! Expression evaluation for job files: `var.*`, `local.*` and Nomad's
//! functions are evaluated now, while interpolations the scheduler and agent
//! resolve later (`${attr.*}`, `${node.*}`, `${meta.*}`, `${env.*}`,
//! `${EDGE_*}`, `${NOMAD_*}`) stay as literal text.

use super::funcs;
use crate::parse::Files;
use ::hcl::Value;
use ::hcl::eval::{Context, ErrorKind, Evaluate};
use hcl_edit::expr::{Expression, ForExpr, FuncCall, Traversal, TraversalOperator};
use hcl_edit::template::Element;
use hcl_edit::visit::{Visit, visit_expr, visit_func_call};
use hcl_edit::visit_mut::{
    VisitMut, visit_element_mut, visit_expr_mut, visit_for_expr_mut, visit_func_call_mut,
    visit_traversal_mut,
};
use hcl_edit::{Ident, Span, Spanned};
use std::collections::BTreeSet;
use std::ops::Range;

const RUNTIME_ROOTS: &[&str] = &["attr", "node", "meta", "env"];
const RUNTIME_PREFIXES: &[&str] = &["EDGE_", "NOMAD_"];

/// What expressions may refer to.
pub(super) struct Scope {
    pub(super) ctx: Context<'static>,
    /// Whether functions may be called: not in variable defaults and
    /// values, which Nomad reads as constants.
    funcs: bool,
    /// What `file()` reads.
    files: Files,
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
            funcs: false,
            files: Files::default(),
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
        files: Files,
    ) -> Scope {
        let mut ctx = Context::new();
        ctx.declare_var("var", Value::Object(values));
        funcs::declare(&mut ctx);
        Scope {
            ctx,
            funcs: true,
            files,
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
        calls: Vec::new(),
        bound: Vec::new(),
    };
    prep.visit_expr_mut(&mut expr);
    if !prep.problems.is_empty() {
        return Err(EvalError::Problems(prep.problems));
    }
    if prep.skipped {
        return Err(EvalError::Skipped);
    }
    funcs::with_files(&scope.files, || evaluate(expr, scope))
}

/// Evaluates a prepared expression: `try`, `can` and `convert` first, whose
/// arguments are not plain values, then the rest through hcl-rs. A failed
/// function call is reported at the call.
fn evaluate(mut expr: Expression, scope: &Scope) -> Result<Value, EvalError> {
    let mut lazy = Lazy {
        scope,
        problems: Vec::new(),
        skipped: false,
        bound: Vec::new(),
    };
    lazy.visit_expr_mut(&mut expr);
    if !lazy.problems.is_empty() {
        return Err(EvalError::Problems(lazy.problems));
    }
    if lazy.skipped {
        return Err(EvalError::Skipped);
    }
    let span = expr.span();
    let mut calls = Calls(Vec::new());
    calls.visit_expr(&expr);
    ::hcl::Expression::from(expr)
        .evaluate(&scope.ctx)
        .map_err(|e| {
            let problem = match e.kind() {
                ErrorKind::FuncCall(name, msg) => {
                    let name = name.to_string();
                    let at = calls
                        .0
                        .iter()
                        .find(|(n, _)| *n == name)
                        .and_then(|(_, s)| s.clone());
                    (at.or(span), format!("{name}(): {msg}"))
                }
                kind => (span, kind.to_string()),
            };
            EvalError::Problems(vec![problem])
        })
}

/// Every function call of an expression, with its span.
struct Calls(Vec<(String, Option<Range<usize>>)>);

impl Visit for Calls {
    fn visit_func_call(&mut self, node: &FuncCall) {
        self.0
            .push((node.name.name.as_str().to_string(), node.span()));
        visit_func_call(self, node);
    }
}

/// The names of the variables an expression refers to.
fn variables(expr: &Expression) -> BTreeSet<String> {
    struct Vars(BTreeSet<String>);
    impl Visit for Vars {
        fn visit_expr(&mut self, node: &Expression) {
            if let Expression::Variable(v) = node {
                self.0.insert(v.as_str().to_string());
            }
            visit_expr(self, node);
        }
    }
    let mut vars = Vars(BTreeSet::new());
    vars.visit_expr(expr);
    vars.0
}

/// The names a `for` expression binds.
fn for_names(node: &ForExpr) -> Vec<String> {
    let intro = &node.intro;
    intro
        .key_var
        .iter()
        .chain(std::iter::once(&intro.value_var))
        .map(|v| v.as_str().to_string())
        .collect()
}

/// Evaluates `try(...)` and `can(...)` one argument at a time, an error
/// in one being their answer rather than the expression's, and turns
/// `convert(value, type)` into the `to...` function of the type.
struct Lazy<'a> {
    scope: &'a Scope,
    problems: Vec<(Option<Range<usize>>, String)>,
    skipped: bool,
    /// Names bound by the `for` expressions around the node visited.
    bound: Vec<String>,
}

impl VisitMut for Lazy<'_> {
    fn visit_for_expr_mut(&mut self, node: &mut ForExpr) {
        let names = for_names(node);
        let n = self.bound.len();
        self.bound.extend(names);
        visit_for_expr_mut(self, node);
        self.bound.truncate(n);
    }

    fn visit_expr_mut(&mut self, node: &mut Expression) {
        let Expression::FuncCall(call) = node else {
            return visit_expr_mut(self, node);
        };
        let name = call.name.name.as_str().to_string();
        let span = call.span();
        match name.as_str() {
            "try" | "can" => {
                let args: Vec<Expression> = call.args.iter().cloned().collect();
                if let Some(v) = args
                    .iter()
                    .flat_map(variables)
                    .find(|v| self.bound.contains(v))
                {
                    self.problems.push((
                        span,
                        format!(
                            "{name}() cannot use `{v}`, a variable of the `for` expression around it: edge evaluates {name}() before the loop"
                        ),
                    ));
                    return;
                }
                if name == "can" && args.len() != 1 {
                    self.problems.push((
                        span,
                        format!("can(): expected 1 argument, got {}", args.len()),
                    ));
                    return;
                }
                let mut last = None;
                for a in args {
                    match evaluate(a, self.scope) {
                        Ok(v) => {
                            let v = if name == "can" { Value::Bool(true) } else { v };
                            *node = literal(v);
                            return;
                        }
                        Err(EvalError::Skipped) => {
                            self.skipped = true;
                            return;
                        }
                        Err(EvalError::Problems(p)) => last = p.into_iter().next(),
                    }
                }
                if name == "can" {
                    *node = literal(Value::Bool(false));
                    return;
                }
                let why = last.map_or_else(|| "it has no arguments".to_string(), |(_, m)| m);
                self.problems.push((
                    span,
                    format!("try(): no argument could be evaluated; the last: {why}"),
                ));
            }
            "convert" => {
                if call.args.len() != 2 {
                    self.problems.push((
                        span,
                        format!("convert(): expected 2 arguments, got {}", call.args.len()),
                    ));
                    return;
                }
                let into = match call.args.get(1) {
                    Some(Expression::Variable(v)) => v.as_str().to_string(),
                    Some(Expression::FuncCall(f)) => f.name.name.as_str().to_string(),
                    _ => String::new(),
                };
                let func = match into.as_str() {
                    "string" => "tostring",
                    "number" => "tonumber",
                    "bool" => "tobool",
                    "list" | "tuple" => "tolist",
                    "set" => "toset",
                    "map" | "object" => "tomap",
                    "any" => "",
                    _ => {
                        self.problems.push((
                            span,
                            "convert(): the type is string, number, bool, list(...), set(...), map(...), object(...), tuple(...) or any".to_string(),
                        ));
                        return;
                    }
                };
                call.args.remove(1);
                if func.is_empty() {
                    *node = call.args.remove(0);
                } else {
                    *call.name.name.value_mut() = Ident::new(func);
                }
                visit_expr_mut(self, node);
            }
            _ => visit_expr_mut(self, node),
        }
    }
}

/// An expression standing for `v`.
pub(super) fn literal(v: Value) -> Expression {
    Expression::from(::hcl::Expression::from(v))
}

fn is_runtime(expr: &Expression, bound: &[String]) -> bool {
    match expr {
        Expression::Variable(v) => {
            let name = v.as_str();
            !bound.iter().any(|b| b == name)
                && (RUNTIME_ROOTS.contains(&name)
                    || RUNTIME_PREFIXES.iter().any(|p| name.starts_with(p)))
        }
        Expression::Traversal(t) => is_runtime(&t.expr, bound),
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
    /// The functions whose arguments are being visited, innermost last.
    calls: Vec<String>,
    /// Names bound by the `for` expressions around the node visited.
    bound: Vec<String>,
}

impl Prepare<'_> {
    /// A runtime value (`${attr.x}`, `${NOMAD_*}`) in a function's
    /// argument: only known where the task runs, long after the function
    /// ran on its `${...}` text. Functions that hand their strings back
    /// unchanged are fine.
    fn runtime_in_call(&mut self, span: Option<Range<usize>>, text: &str) -> bool {
        let Some(f) = self
            .calls
            .iter()
            .rev()
            .find(|c| !funcs::PASS_THROUGH.contains(&c.as_str()))
        else {
            return false;
        };
        self.problems.push((
            span,
            format!(
                "`{text}` is only known where the task runs, but {f}() runs when the job file is read: move it out of the call"
            ),
        ));
        true
    }

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
            && is_runtime(&interp.expr, &self.bound)
        {
            let text = format!("${{{}}}", interp.expr.to_string().trim());
            if !self.runtime_in_call(interp.expr.span(), &text) {
                *node = Element::Literal(Spanned::new(text));
            }
            return;
        }
        visit_element_mut(self, node);
    }

    /// A bare `attr.x` is the text `${attr.x}`, as Nomad reads it.
    fn visit_expr_mut(&mut self, node: &mut Expression) {
        if is_runtime(node, &self.bound) {
            let text = format!("${{{}}}", node.to_string().trim());
            if !self.runtime_in_call(node.span(), &text) {
                *node = Expression::from(text);
            }
            return;
        }
        visit_expr_mut(self, node);
    }

    fn visit_for_expr_mut(&mut self, node: &mut ForExpr) {
        let names = for_names(node);
        let n = self.bound.len();
        self.bound.extend(names);
        visit_for_expr_mut(self, node);
        self.bound.truncate(n);
    }

    fn visit_func_call_mut(&mut self, node: &mut FuncCall) {
        let name = node.name.name.as_str().to_string();
        if !self.scope.funcs {
            self.problems.push((
                node.span(),
                format!(
                    "{name}() cannot be used here: a variable's default and values are constants, as in Nomad"
                ),
            ));
            return;
        }
        if !node.name.namespace.is_empty() || !funcs::exists(&name) {
            self.problems.push((
                node.span(),
                format!(
                    "unknown function `{}`",
                    node.name
                        .namespace
                        .iter()
                        .chain(std::iter::once(&node.name.name))
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join("::")
                ),
            ));
            return;
        }
        self.calls.push(name);
        if self.calls.last().is_some_and(|n| n == "convert") {
            // The second argument is a type, not a value.
            if let Some(value) = node.args.get_mut(0) {
                self.visit_expr_mut(value);
            }
        } else {
            visit_func_call_mut(self, node);
        }
        self.calls.pop();
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
