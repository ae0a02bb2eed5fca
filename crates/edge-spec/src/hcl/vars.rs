//! Input variables: `variable` blocks, overridden by `-var-file` files, then
//! by `-var name=value`, converted to each variable's declared type.

use super::Decoder;
use super::expr::{self, EvalError, Scope, describe};
use crate::error::{Diagnostic, Location};
use crate::parse::{LineIndex, ParseOptions};
use ::hcl::Value;
use hcl_edit::Span;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Attribute, Body, Structure};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VarType {
    String,
    Number,
    Bool,
    List,
    Map,
    Any,
}

impl VarType {
    fn from_expr(expr: &Expression) -> Option<VarType> {
        let name = match expr {
            Expression::Variable(v) => v.as_str().to_string(),
            Expression::FuncCall(f) => f.name.name.as_str().to_string(),
            Expression::String(s) => s.value().clone(),
            _ => return None,
        };
        Some(match name.as_str() {
            "string" => VarType::String,
            "number" => VarType::Number,
            "bool" => VarType::Bool,
            "list" | "set" | "tuple" => VarType::List,
            "map" | "object" => VarType::Map,
            "any" => VarType::Any,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            VarType::String => "a string",
            VarType::Number => "a number",
            VarType::Bool => "a bool",
            VarType::List => "a list",
            VarType::Map => "a map",
            VarType::Any => "any value",
        }
    }

    /// HCL's automatic conversions between strings, numbers and bools.
    fn convert(self, v: Value) -> Result<Value, String> {
        let ok = match (self, &v) {
            (_, Value::Null) | (VarType::Any, _) => true,
            (VarType::String, Value::String(_)) => true,
            (VarType::String, Value::Number(_) | Value::Bool(_)) => {
                return Ok(Value::String(expr::as_string(&v).unwrap_or_default()));
            }
            (VarType::Number, Value::Number(_)) => true,
            (VarType::Number, Value::String(s)) => {
                let t = s.trim();
                if let Ok(i) = t.parse::<i64>() {
                    return Ok(Value::from(i));
                }
                if let Some(n) = t.parse::<f64>().ok().and_then(::hcl::Number::from_f64) {
                    return Ok(Value::Number(n));
                }
                false
            }
            (VarType::Bool, _) => {
                if let Some(b) = expr::as_bool(&v) {
                    return Ok(Value::Bool(b));
                }
                false
            }
            (VarType::List, Value::Array(_)) | (VarType::Map, Value::Object(_)) => true,
            _ => false,
        };
        if ok {
            Ok(v)
        } else {
            Err(format!("expected {}, got {}", self.name(), describe(&v)))
        }
    }

    /// `-var` text: strings and scalars are taken as written, lists and maps
    /// are HCL expressions (`-var 'dcs=["a","b"]'`).
    fn parse_cli(self, raw: &str) -> Result<Value, String> {
        match self {
            VarType::String | VarType::Any => Ok(Value::String(raw.to_string())),
            VarType::Number | VarType::Bool => self.convert(Value::String(raw.to_string())),
            VarType::List | VarType::Map => {
                let parsed = hcl_edit::parser::parse_expr(raw).map_err(|e| {
                    format!("{} expected, not valid HCL: {}", self.name(), e.message())
                })?;
                match expr::eval(&parsed, &Scope::without_vars()) {
                    Ok(v) => self.convert(v),
                    Err(EvalError::Problems(p)) => {
                        Err(p.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; "))
                    }
                    Err(EvalError::Skipped) => Err("cannot be evaluated".to_string()),
                }
            }
        }
    }
}

struct Declared {
    ty: VarType,
    value: Option<Value>,
    /// The default failed to convert: reported already, not "missing".
    broken: bool,
    location: Location,
}

impl Decoder<'_> {
    /// Reads every top-level `variable` block and applies the overrides;
    /// returns the scope job expressions are evaluated in.
    pub(super) fn resolve_vars(&mut self, body: &Body, opts: &ParseOptions) -> Scope {
        let mut vars: BTreeMap<String, Declared> = BTreeMap::new();
        for block in body.blocks().filter(|b| b.ident.as_str() == "variable") {
            let Some(name) = self.label(block, "variable") else {
                continue;
            };
            let path = format!("var.{name}");
            let location = self.lines.span(block.span());
            if vars.contains_key(&name) {
                self.error(
                    block.span(),
                    &path,
                    format!("variable `{name}` is declared twice"),
                );
                continue;
            }
            let mut attrs: BTreeMap<&str, &Attribute> = BTreeMap::new();
            for s in block.body.iter() {
                let (span, key, what) = match s {
                    Structure::Attribute(a) => {
                        let key = a.key.as_str();
                        if matches!(key, "type" | "default" | "description") {
                            attrs.insert(key, a);
                            continue;
                        }
                        (a.key.span(), key, "attribute")
                    }
                    Structure::Block(b) => (b.ident.span(), b.ident.as_str(), "block"),
                };
                self.warn(
                    span,
                    &format!("{path}.{key}"),
                    format!("unknown {what} `{key}` is ignored"),
                );
            }
            let mut ty = VarType::Any;
            if let Some(attr) = attrs.get("type") {
                match VarType::from_expr(&attr.value) {
                    Some(t) => ty = t,
                    None => self.error(
                        attr.value.span(),
                        &format!("{path}.type"),
                        "unknown type: expected string, number, bool, list(...), map(...) or any"
                            .to_string(),
                    ),
                }
            }
            let mut declared = Declared {
                ty,
                value: None,
                broken: false,
                location,
            };
            if let Some(attr) = attrs.get("default") {
                let field = format!("{path}.default");
                match expr::eval(&attr.value, &Scope::without_vars()) {
                    Ok(v) => match ty.convert(v) {
                        Ok(v) => declared.value = Some(v),
                        Err(m) => {
                            declared.broken = true;
                            self.error(attr.value.span(), &field, m);
                        }
                    },
                    Err(e) => {
                        declared.broken = true;
                        self.report(e, attr.value.span(), &field);
                    }
                }
            }
            vars.insert(name, declared);
        }

        for (file, contents) in &opts.var_files {
            self.apply_var_file(file, contents, &mut vars);
        }

        for (name, raw) in &opts.vars {
            let field = format!("var.{name}");
            match vars.get_mut(name) {
                None => self.errors.push(Diagnostic::new(
                    field,
                    format!("undeclared variable `{name}` given with -var"),
                )),
                Some(d) => match d.ty.parse_cli(raw) {
                    Ok(v) => {
                        d.value = Some(v);
                        d.broken = false;
                    }
                    Err(m) => {
                        d.broken = true;
                        self.errors.push(Diagnostic::new(
                            field,
                            format!("invalid -var value for `{name}`: {m}"),
                        ));
                    }
                },
            }
        }

        let mut values = ::hcl::Map::new();
        let mut failed = BTreeSet::new();
        for (name, d) in &vars {
            match &d.value {
                Some(v) if !d.broken => {
                    values.insert(name.clone(), v.clone());
                }
                _ => {
                    if !d.broken {
                        self.errors.push(
                            Diagnostic::new(
                                format!("var.{name}"),
                                format!(
                                    "variable `{name}` has no default and no value was given (use -var {name}=... or -var-file)"
                                ),
                            )
                            .at(d.location.clone()),
                        );
                    }
                    failed.insert(name.clone());
                }
            }
        }
        Scope::with_vars(
            values,
            vars.keys().cloned().collect(),
            failed,
            opts.files.clone(),
        )
    }

    fn apply_var_file(
        &mut self,
        file: &str,
        contents: &str,
        vars: &mut BTreeMap<String, Declared>,
    ) {
        let lines = LineIndex::new(file, contents);
        let body = match hcl_edit::parser::parse_body(contents) {
            Ok(b) => b,
            Err(e) => {
                let loc = e.location();
                self.errors.push(
                    Diagnostic::new(
                        "",
                        format!("syntax error: {} (in `{}`)", e.message(), e.line().trim()),
                    )
                    .at(Location {
                        file: file.to_string(),
                        line: loc.line(),
                        column: loc.column(),
                    }),
                );
                return;
            }
        };
        for s in body.iter() {
            let attr = match s {
                Structure::Attribute(a) => a,
                Structure::Block(b) => {
                    self.warnings.push(
                        Diagnostic::new(
                            b.ident.as_str(),
                            "blocks are not allowed in a var file; ignored",
                        )
                        .at(lines.span(b.span())),
                    );
                    continue;
                }
            };
            let name = attr.key.as_str();
            let field = format!("var.{name}");
            let at = lines.span(attr.value.span());
            let Some(d) = vars.get_mut(name) else {
                self.warnings.push(
                    Diagnostic::new(
                        field,
                        format!("undeclared variable `{name}` in var file is ignored"),
                    )
                    .at(lines.span(attr.key.span())),
                );
                continue;
            };
            match expr::eval(&attr.value, &Scope::without_vars()).map(|v| d.ty.convert(v)) {
                Ok(Ok(v)) => {
                    d.value = Some(v);
                    d.broken = false;
                }
                Ok(Err(m)) => {
                    d.broken = true;
                    self.errors.push(Diagnostic::new(field, m).at(at));
                }
                Err(EvalError::Problems(ps)) => {
                    d.broken = true;
                    for (span, m) in ps {
                        let at = span.map_or_else(|| at.clone(), |r| lines.location(r.start));
                        self.errors.push(Diagnostic::new(field.clone(), m).at(at));
                    }
                }
                Err(EvalError::Skipped) => d.broken = true,
            }
        }
    }
}
