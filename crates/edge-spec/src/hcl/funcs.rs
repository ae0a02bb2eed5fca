//! Nomad's HCL2 function library (go-cty's stdlib and go-cty-funcs, as
//! `jobspec2/functions.go` lists them), evaluated when the job file is read.
//! Arguments convert as cty converts them (a number where a string is
//! wanted is its text); every function refuses what would grow without
//! bound (a `range` of millions, an `indent` of a billion) with an error
//! rather than a panic or an hour. Functions whose value would change from
//! one read of the same file to the next (`uuidv4`, `timestamp`, `bcrypt`)
//! are refused: the job's hash must stay the same while the file does.

use super::expr::describe;
use crate::parse::Files;
use ::hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use ::hcl::{Map, Number, Value};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

type R = Result<Value, String>;

/// The most elements a function builds (cty's own limit for `range`).
const MAX_ITEMS: usize = 1024;
/// The most elements of a `setproduct`.
const MAX_PRODUCT: usize = 10_000;
/// The longest string a function builds, in bytes.
const MAX_STRING: usize = 1 << 20;
/// The widest `format` width or precision.
const MAX_WIDTH: usize = 10_000;
/// How deep `flatten` and the encoders go into nested lists.
const MAX_DEPTH: usize = 100;

/// A function: (name, positional parameters, extra arguments allowed, body).
type Entry = (&'static str, usize, bool, fn(FuncArgs) -> R);

const TABLE: &[Entry] = &[
    // Strings.
    ("chomp", 1, false, chomp),
    ("endswith", 2, false, endswith),
    ("format", 1, true, format),
    ("formatlist", 1, true, formatlist),
    ("indent", 2, false, indent),
    ("join", 1, true, join),
    ("lower", 1, false, lower),
    ("regex", 2, false, regex),
    ("regexall", 2, false, regexall),
    ("regex_replace", 3, false, regex_replace),
    ("replace", 3, false, replace),
    ("split", 2, false, split),
    ("startswith", 2, false, startswith),
    ("strlen", 1, false, strlen),
    ("strrev", 1, false, strrev),
    ("substr", 3, false, substr),
    ("title", 1, false, title),
    ("trim", 2, false, trim),
    ("trimprefix", 2, false, trimprefix),
    ("trimspace", 1, false, trimspace),
    ("trimsuffix", 2, false, trimsuffix),
    ("upper", 1, false, upper),
    // Collections.
    ("chunklist", 2, false, chunklist),
    ("coalesce", 0, true, coalesce),
    ("coalescelist", 0, true, coalescelist),
    ("compact", 1, false, compact),
    ("concat", 0, true, concat),
    ("contains", 2, false, contains),
    ("distinct", 1, false, distinct),
    ("element", 2, false, element),
    ("flatten", 1, false, flatten),
    ("index", 2, false, index),
    ("keys", 1, false, keys),
    ("length", 1, false, length),
    ("lookup", 2, true, lookup),
    ("merge", 0, true, merge),
    ("range", 1, true, range),
    ("reverse", 1, false, reverse),
    ("setintersection", 1, true, setintersection),
    ("setproduct", 0, true, setproduct),
    ("setunion", 1, true, setunion),
    ("slice", 3, false, slice),
    ("sort", 1, false, sort),
    ("values", 1, false, values),
    ("zipmap", 2, false, zipmap),
    // Numbers.
    ("abs", 1, false, abs),
    ("ceil", 1, false, ceil),
    ("floor", 1, false, floor),
    ("log", 2, false, log),
    ("max", 0, true, max),
    ("min", 0, true, min),
    ("parseint", 2, false, parseint),
    ("pow", 2, false, pow),
    ("signum", 1, false, signum),
    // Encodings.
    ("base64decode", 1, false, base64decode),
    ("base64encode", 1, false, base64encode),
    ("csvdecode", 1, false, csvdecode),
    ("jsondecode", 1, false, jsondecode),
    ("jsonencode", 1, false, jsonencode),
    ("urlencode", 1, false, urlencode),
    ("yamldecode", 1, false, yamldecode),
    ("yamlencode", 1, false, yamlencode),
    // Hashes and UUIDs.
    ("base64sha256", 1, false, base64sha256),
    ("base64sha512", 1, false, base64sha512),
    ("md5", 1, false, md5),
    ("sha1", 1, false, sha1),
    ("sha256", 1, false, sha256),
    ("sha512", 1, false, sha512),
    ("uuidv5", 2, false, uuidv5),
    // Dates.
    ("formatdate", 2, false, formatdate),
    ("timeadd", 2, false, timeadd),
    // Networks.
    ("cidrhost", 2, false, cidrhost),
    ("cidrnetmask", 1, false, cidrnetmask),
    ("cidrsubnet", 3, false, cidrsubnet),
    ("cidrsubnets", 1, true, cidrsubnets),
    // Conversions (`try`, `can` and `convert` are rewritten before the
    // call: their arguments are not plain values).
    ("tobool", 1, false, tobool),
    ("tolist", 1, false, tolist),
    ("tomap", 1, false, tomap),
    ("tonumber", 1, false, tonumber),
    ("toset", 1, false, toset),
    ("tostring", 1, false, tostring),
    // Files, read through the parse's reader, beside the job file.
    ("basename", 1, false, basename),
    ("dirname", 1, false, dirname),
    ("file", 1, false, file),
    ("filebase64", 1, false, filebase64),
    ("fileexists", 1, false, fileexists),
    // Refused, each saying why.
    ("abspath", 0, true, abspath),
    ("bcrypt", 0, true, bcrypt),
    ("fileset", 0, true, fileset),
    ("pathexpand", 0, true, pathexpand),
    ("rsadecrypt", 0, true, rsadecrypt),
    ("timestamp", 0, true, timestamp),
    ("uuidv4", 0, true, uuidv4),
];

/// Functions whose value holds their string arguments unchanged, so a
/// runtime `${NOMAD_*}` passed through them is still right when the agent
/// fills it in. Any other function would work on the `${...}` text itself.
pub(super) const PASS_THROUGH: &[&str] = &[
    "coalesce",
    "coalescelist",
    "compact",
    "concat",
    "element",
    "flatten",
    "join",
    "lookup",
    "merge",
    "reverse",
    "slice",
    "tolist",
    "tomap",
    "tostring",
    "try",
    "values",
    "zipmap",
];

/// Makes every function callable in `ctx`.
pub(super) fn declare(ctx: &mut Context) {
    for &(name, params, variadic, f) in TABLE {
        let mut def = FuncDef::builder().params(vec![ParamType::Any; params]);
        if variadic {
            def = def.variadic_param(ParamType::Any);
        }
        ctx.declare_func(name, def.build(f));
    }
}

/// Whether `name` is one of Nomad's functions (including `try`, `can` and
/// `convert`, which never reach [`declare`]'s table).
pub(super) fn exists(name: &str) -> bool {
    matches!(name, "try" | "can" | "convert") || TABLE.iter().any(|t| t.0 == name)
}

thread_local! {
    /// The reader `file()` uses while an expression is evaluated: hcl-rs
    /// functions are plain `fn` pointers with no state of their own.
    static FILES: RefCell<Files> = RefCell::new(Files::default());
}

/// Runs `f` with `files` as what `file()` and `fileexists()` read.
pub(super) fn with_files<T>(files: &Files, f: impl FnOnce() -> T) -> T {
    let old = FILES.with(|c| c.replace(files.clone()));
    let out = f();
    FILES.with(|c| c.replace(old));
    out
}

// Argument conversions, as cty converts them.

fn arg(a: &FuncArgs, i: usize) -> &Value {
    a.get(i).unwrap_or(&Value::Null)
}

fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("a string is required, not null".to_string()),
        _ => Err(format!("a string is required, not {}", describe(v))),
    }
}

fn str_arg(a: &FuncArgs, i: usize) -> Result<String, String> {
    string(arg(a, i))
}

fn float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| "a number is required".to_string()),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("a number is required, not string {s:?}")),
        Value::Null => Err("a number is required, not null".to_string()),
        _ => Err(format!("a number is required, not {}", describe(v))),
    }
}

fn num_arg(a: &FuncArgs, i: usize) -> Result<f64, String> {
    float(arg(a, i))
}

fn int(v: &Value) -> Result<i64, String> {
    if let Value::Number(n) = v
        && let Some(i) = n.as_i64()
    {
        return Ok(i);
    }
    let f = float(v)?;
    if f.fract() != 0.0 || f.abs() > 9.0e15 {
        return Err(format!("a whole number is required, not {f}"));
    }
    Ok(f as i64)
}

fn int_arg(a: &FuncArgs, i: usize) -> Result<i64, String> {
    int(arg(a, i))
}

fn list(v: &Value) -> Result<&Vec<Value>, String> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Null => Err("a list is required, not null".to_string()),
        _ => Err(format!("a list is required, not {}", describe(v))),
    }
}

fn list_arg(a: &FuncArgs, i: usize) -> Result<&Vec<Value>, String> {
    list(arg(a, i))
}

fn map(v: &Value) -> Result<&Map<String, Value>, String> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Err("a map is required, not null".to_string()),
        _ => Err(format!("a map is required, not {}", describe(v))),
    }
}

/// A number as HCL writes it: whole numbers stay integers.
fn number(f: f64) -> R {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| "the result is not a finite number".to_string())
}

fn capped(s: String) -> R {
    if s.len() > MAX_STRING {
        return Err(format!(
            "the result would be {} bytes, more than the {MAX_STRING} a job file may build",
            s.len()
        ));
    }
    Ok(Value::String(s))
}

fn strings(items: &[Value]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|s| Value::String(string(s).unwrap_or_default()))
            .collect(),
    )
}

/// A set as cty orders one: strings lexically, numbers by value, others by
/// their JSON, each value once.
fn set(mut items: Vec<Value>) -> Value {
    items.sort_by(|a, b| match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => json(a, 0)
            .unwrap_or_default()
            .cmp(&json(b, 0).unwrap_or_default()),
    });
    items.dedup();
    Value::Array(items)
}

// Strings.

fn chomp(a: FuncArgs) -> R {
    Ok(Value::String(
        str_arg(&a, 0)?.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

fn startswith(a: FuncArgs) -> R {
    Ok(Value::Bool(str_arg(&a, 0)?.starts_with(&str_arg(&a, 1)?)))
}

fn endswith(a: FuncArgs) -> R {
    Ok(Value::Bool(str_arg(&a, 0)?.ends_with(&str_arg(&a, 1)?)))
}

fn indent(a: FuncArgs) -> R {
    let n = int_arg(&a, 0)?;
    let s = str_arg(&a, 1)?;
    let n = usize::try_from(n).map_err(|_| "the number of spaces cannot be negative")?;
    let lines = s.matches('\n').count();
    if lines == 0 {
        // Nothing to indent, and the padding of a huge `n` must not be built.
        return Ok(Value::String(s));
    }
    if n.saturating_mul(lines).saturating_add(s.len()) > MAX_STRING {
        return Err(format!(
            "indenting {lines} lines by {n} spaces would build more than {MAX_STRING} bytes"
        ));
    }
    Ok(Value::String(
        s.replace('\n', &format!("\n{}", " ".repeat(n))),
    ))
}

fn join(a: FuncArgs) -> R {
    let sep = str_arg(&a, 0)?;
    if a.len() < 2 {
        return Err("at least one list is required".to_string());
    }
    let mut parts = Vec::new();
    for l in &a[1..] {
        for v in list(l)? {
            parts.push(string(v).map_err(|e| format!("cannot join: {e}"))?);
        }
    }
    capped(parts.join(&sep))
}

fn lower(a: FuncArgs) -> R {
    Ok(Value::String(str_arg(&a, 0)?.to_lowercase()))
}

fn upper(a: FuncArgs) -> R {
    Ok(Value::String(str_arg(&a, 0)?.to_uppercase()))
}

fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regular expression: {e}"))
}

/// One match: the text, its unnamed captures as a list, or its named
/// captures as a map, as cty's `regex` returns them.
fn captures(re: &regex::Regex, c: &regex::Captures) -> Value {
    let text = |m: Option<regex::Match>| m.map_or(Value::Null, |m| Value::from(m.as_str()));
    if re.captures_len() == 1 {
        return text(c.get(0));
    }
    if re.capture_names().flatten().next().is_some() {
        let mut out = Map::new();
        for name in re.capture_names().flatten() {
            out.insert(name.to_string(), text(c.name(name)));
        }
        return Value::Object(out);
    }
    Value::Array((1..re.captures_len()).map(|i| text(c.get(i))).collect())
}

fn regex(a: FuncArgs) -> R {
    let re = compile(&str_arg(&a, 0)?)?;
    let s = str_arg(&a, 1)?;
    let c = re
        .captures(&s)
        .ok_or("the pattern did not match any part of the given string")?;
    Ok(captures(&re, &c))
}

fn regexall(a: FuncArgs) -> R {
    let re = compile(&str_arg(&a, 0)?)?;
    let s = str_arg(&a, 1)?;
    Ok(Value::Array(
        re.captures_iter(&s)
            .take(MAX_STRING)
            .map(|c| captures(&re, &c))
            .collect(),
    ))
}

fn regex_replace(a: FuncArgs) -> R {
    let s = str_arg(&a, 0)?;
    let re = compile(&str_arg(&a, 1)?)?;
    let with = str_arg(&a, 2)?;
    let matches = re.find_iter(&s).count();
    if matches.saturating_mul(with.len()).saturating_add(s.len()) > MAX_STRING * 2 {
        return Err(format!("the result would be more than {MAX_STRING} bytes"));
    }
    capped(re.replace_all(&s, with.as_str()).into_owned())
}

fn replace(a: FuncArgs) -> R {
    let s = str_arg(&a, 0)?;
    let from = str_arg(&a, 1)?;
    let to = str_arg(&a, 2)?;
    let n = if from.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(&from).count()
    };
    if n.saturating_mul(to.len()).saturating_add(s.len()) > MAX_STRING * 2 {
        return Err(format!("the result would be more than {MAX_STRING} bytes"));
    }
    capped(s.replace(&from, &to))
}

fn split(a: FuncArgs) -> R {
    let sep = str_arg(&a, 0)?;
    let s = str_arg(&a, 1)?;
    if sep.is_empty() {
        return Ok(Value::Array(
            s.chars().map(|c| Value::String(c.to_string())).collect(),
        ));
    }
    Ok(Value::Array(s.split(&sep).map(Value::from).collect()))
}

fn strlen(a: FuncArgs) -> R {
    Ok(Value::from(str_arg(&a, 0)?.chars().count()))
}

fn strrev(a: FuncArgs) -> R {
    Ok(Value::String(str_arg(&a, 0)?.chars().rev().collect()))
}

fn substr(a: FuncArgs) -> R {
    let s = str_arg(&a, 0)?;
    let offset = int_arg(&a, 1)?;
    let length = int_arg(&a, 2)?;
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len() as i64;
    let start = if offset < 0 { len + offset } else { offset };
    if start < 0 || start > len {
        return Err(format!(
            "offset {offset} is outside the string's {len} characters"
        ));
    }
    let end = if length < 0 {
        len
    } else {
        start.saturating_add(length).min(len)
    };
    Ok(Value::String(
        chars[start as usize..end.max(start) as usize]
            .iter()
            .collect(),
    ))
}

fn title(a: FuncArgs) -> R {
    let mut out = String::new();
    let mut boundary = true;
    for c in str_arg(&a, 0)?.chars() {
        if boundary {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        boundary = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    Ok(Value::String(out))
}

fn trim(a: FuncArgs) -> R {
    let s = str_arg(&a, 0)?;
    let cut: Vec<char> = str_arg(&a, 1)?.chars().collect();
    Ok(Value::from(s.trim_matches(cut.as_slice())))
}

fn trimprefix(a: FuncArgs) -> R {
    let s = str_arg(&a, 0)?;
    let p = str_arg(&a, 1)?;
    Ok(Value::from(s.strip_prefix(p.as_str()).unwrap_or(&s)))
}

fn trimsuffix(a: FuncArgs) -> R {
    let s = str_arg(&a, 0)?;
    let p = str_arg(&a, 1)?;
    Ok(Value::from(s.strip_suffix(p.as_str()).unwrap_or(&s)))
}

fn trimspace(a: FuncArgs) -> R {
    Ok(Value::from(str_arg(&a, 0)?.trim()))
}

// `format`: Go's verbs as cty's stdlib takes them.

#[derive(Default)]
struct Spec {
    plus: bool,
    minus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

fn digits(chars: &[char], i: &mut usize) -> Result<Option<usize>, String> {
    let start = *i;
    let mut n: usize = 0;
    while let Some(d) = chars.get(*i).and_then(|c| c.to_digit(10)) {
        n = n.saturating_mul(10).saturating_add(d as usize);
        *i += 1;
    }
    if *i == start {
        return Ok(None);
    }
    if n > MAX_WIDTH {
        return Err(format!(
            "width or precision {n} is more than the {MAX_WIDTH} allowed"
        ));
    }
    Ok(Some(n))
}

fn pad(spec: &Spec, body: String, numeric: bool) -> String {
    let Some(width) = spec.width else {
        return body;
    };
    let len = body.chars().count();
    if len >= width {
        return body;
    }
    let fill = width - len;
    if spec.minus {
        return body + &" ".repeat(fill);
    }
    if spec.zero && numeric {
        let sign = body.starts_with(['+', '-', ' ']);
        let (s, rest) = body.split_at(if sign { 1 } else { 0 });
        return format!("{s}{}{rest}", "0".repeat(fill));
    }
    " ".repeat(fill) + &body
}

fn signed(spec: &Spec, negative: bool, digits: String) -> String {
    let sign = if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    format!("{sign}{digits}")
}

/// Go's `%e`: at least two exponent digits, with a sign.
fn exp(f: f64, precision: usize, upper: bool) -> String {
    let s = format!("{:.*e}", precision, f);
    let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
    let (esign, edigits) = match e.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', e),
    };
    let out = format!("{mantissa}e{esign}{edigits:0>2}");
    if upper { out.to_uppercase() } else { out }
}

/// Go's `%g`: the shortest form that reads back, exponent past 21 digits.
fn shortest(f: f64, precision: Option<usize>, upper: bool) -> String {
    if let Some(p) = precision {
        let p = p.max(1);
        let e = if f == 0.0 {
            0
        } else {
            f.abs().log10().floor() as i64
        };
        if e < -4 || e >= p as i64 {
            let s = exp(f, p - 1, upper);
            return trim_zeros_exp(&s);
        }
        let s = format!("{:.*}", (p as i64 - 1 - e).max(0) as usize, f);
        return if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (esign, ed) = match e.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', e),
        };
        let out = format!("{m}e{esign}{ed:0>2}");
        return if upper { out.to_uppercase() } else { out };
    }
    format!("{f}")
}

fn trim_zeros_exp(s: &str) -> String {
    match s.split_once(['e', 'E']) {
        Some((m, e)) if m.contains('.') => {
            let sep = if s.contains('E') { 'E' } else { 'e' };
            format!("{}{sep}{e}", m.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => s.to_string(),
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn verb(spec: &Spec, verb: char, v: &Value) -> Result<String, String> {
    if v.is_null() && !matches!(verb, 'v') {
        return Err(format!("null value cannot be formatted with %{verb}"));
    }
    let out = match verb {
        'v' if spec.sharp => pad(spec, json(v, 0)?, false),
        'v' => match v {
            Value::String(s) => pad(spec, s.clone(), false),
            Value::Number(_) => return verb_num(spec, 'g', v),
            Value::Bool(b) => pad(spec, b.to_string(), false),
            Value::Null => pad(spec, "null".to_string(), false),
            _ => pad(spec, json(v, 0)?, false),
        },
        't' => {
            let b = super::expr::as_bool(v)
                .ok_or_else(|| format!("%t needs a bool, not {}", describe(v)))?;
            pad(spec, b.to_string(), false)
        }
        's' => {
            let mut s = string(v).map_err(|e| format!("%s: {e}"))?;
            if let Some(p) = spec.precision {
                s = s.chars().take(p).collect();
            }
            pad(spec, s, false)
        }
        'q' => pad(
            spec,
            quoted(&string(v).map_err(|e| format!("%q: {e}"))?),
            false,
        ),
        _ => return verb_num(spec, verb, v),
    };
    Ok(out)
}

fn verb_num(spec: &Spec, verb: char, v: &Value) -> Result<String, String> {
    let f = float(v).map_err(|e| format!("%{verb}: {e}"))?;
    let body = match verb {
        'd' | 'b' | 'o' | 'x' | 'X' => {
            if f.fract() != 0.0 {
                return Err(format!("%{verb} needs a whole number, not {f}"));
            }
            let n = int(v)?;
            let m = n.unsigned_abs();
            let digits = match verb {
                'd' => m.to_string(),
                'b' => format!("{m:b}"),
                'o' => format!("{m:o}"),
                'x' => format!("{m:x}"),
                _ => format!("{m:X}"),
            };
            signed(spec, n < 0, digits)
        }
        'e' | 'E' => {
            let s = exp(f.abs(), spec.precision.unwrap_or(6), verb == 'E');
            signed(spec, f < 0.0, s)
        }
        'f' | 'F' => signed(
            spec,
            f < 0.0,
            format!("{:.*}", spec.precision.unwrap_or(6), f.abs()),
        ),
        'g' | 'G' => signed(
            spec,
            f < 0.0,
            shortest(f.abs(), spec.precision, verb == 'G'),
        ),
        _ => return Err(format!("unsupported format verb %{verb}")),
    };
    Ok(pad(spec, body, true))
}

fn sprintf(fmt: &str, args: &[Value]) -> Result<String, String> {
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    let mut next = 0;
    let mut indexed = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.get(i) == Some(&'%') {
            out.push('%');
            i += 1;
            continue;
        }
        let mut spec = Spec::default();
        while let Some(f) = chars.get(i) {
            match f {
                '+' => spec.plus = true,
                '-' => spec.minus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            i += 1;
        }
        spec.width = digits(&chars, &mut i)?;
        if chars.get(i) == Some(&'.') {
            i += 1;
            spec.precision = Some(digits(&chars, &mut i)?.unwrap_or(0));
        }
        if chars.get(i) == Some(&'[') {
            i += 1;
            let n = digits(&chars, &mut i)?.ok_or("an argument index `[n]` needs a number")?;
            if chars.get(i) != Some(&']') {
                return Err("an argument index `[n]` is not closed".to_string());
            }
            i += 1;
            if n == 0 {
                return Err("argument indexes start at 1".to_string());
            }
            next = n - 1;
            indexed = true;
        }
        let Some(&v) = chars.get(i) else {
            return Err("the format ends in the middle of a `%` verb".to_string());
        };
        i += 1;
        let value = args.get(next).ok_or_else(|| {
            format!(
                "not enough arguments for the format: %{v} needs argument {}",
                next + 1
            )
        })?;
        next += 1;
        out.push_str(&verb(&spec, v, value)?);
        if out.len() > MAX_STRING {
            return Err(format!("the result would be more than {MAX_STRING} bytes"));
        }
    }
    if next < args.len() && !indexed {
        return Err(format!(
            "too many arguments: the format uses {next} of the {} given",
            args.len()
        ));
    }
    Ok(out)
}

fn format(a: FuncArgs) -> R {
    let fmt = str_arg(&a, 0)?;
    capped(sprintf(&fmt, &a[1..])?)
}

fn formatlist(a: FuncArgs) -> R {
    let fmt = str_arg(&a, 0)?;
    let args = &a[1..];
    let mut n: Option<usize> = None;
    for v in args {
        if let Value::Array(items) = v {
            match n {
                Some(m) if m != items.len() => {
                    return Err(format!(
                        "the lists given have different lengths ({m} and {})",
                        items.len()
                    ));
                }
                _ => n = Some(items.len()),
            }
        }
    }
    let mut out = Vec::new();
    let mut total = 0;
    for i in 0..n.unwrap_or(1) {
        let row: Vec<Value> = args
            .iter()
            .map(|v| match v {
                Value::Array(items) => items[i].clone(),
                other => other.clone(),
            })
            .collect();
        let s = sprintf(&fmt, &row).map_err(|e| format!("item {i}: {e}"))?;
        total += s.len();
        if total > MAX_STRING {
            return Err(format!("the result would be more than {MAX_STRING} bytes"));
        }
        out.push(Value::String(s));
    }
    Ok(Value::Array(out))
}

// Collections.

fn chunklist(a: FuncArgs) -> R {
    let items = list_arg(&a, 0)?;
    let size = int_arg(&a, 1)?;
    if size < 0 {
        return Err("the chunk size cannot be negative".to_string());
    }
    if size == 0 {
        return Ok(Value::Array(vec![Value::Array(items.clone())]));
    }
    Ok(Value::Array(
        items
            .chunks(size as usize)
            .map(|c| Value::Array(c.to_vec()))
            .collect(),
    ))
}

fn coalesce(a: FuncArgs) -> R {
    a.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty-string arguments".to_string())
}

fn coalescelist(a: FuncArgs) -> R {
    for v in a.iter() {
        if !list(v)?.is_empty() {
            return Ok(v.clone());
        }
    }
    Err("no non-empty list arguments".to_string())
}

fn compact(a: FuncArgs) -> R {
    let items = list_arg(&a, 0)?;
    Ok(Value::Array(
        items
            .iter()
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
            .map(|v| Value::String(string(v).unwrap_or_default()))
            .collect(),
    ))
}

fn concat(a: FuncArgs) -> R {
    let mut out = Vec::new();
    for v in a.iter() {
        out.extend(list(v)?.iter().cloned());
    }
    Ok(Value::Array(out))
}

fn contains(a: FuncArgs) -> R {
    Ok(Value::Bool(list_arg(&a, 0)?.contains(arg(&a, 1))))
}

fn distinct(a: FuncArgs) -> R {
    let mut out: Vec<Value> = Vec::new();
    for v in list_arg(&a, 0)? {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}

fn element(a: FuncArgs) -> R {
    let items = list_arg(&a, 0)?;
    let i = int_arg(&a, 1)?;
    if items.is_empty() {
        return Err("cannot use element function with an empty list".to_string());
    }
    if i < 0 {
        return Err("cannot use element function with a negative index".to_string());
    }
    Ok(items[(i as usize) % items.len()].clone())
}

fn flatten_into(items: &[Value], out: &mut Vec<Value>, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("lists nested more than {MAX_DEPTH} deep"));
    }
    for v in items {
        match v {
            Value::Array(inner) => flatten_into(inner, out, depth + 1)?,
            other => out.push(other.clone()),
        }
    }
    Ok(())
}

fn flatten(a: FuncArgs) -> R {
    let mut out = Vec::new();
    flatten_into(list_arg(&a, 0)?, &mut out, 0)?;
    Ok(Value::Array(out))
}

fn index(a: FuncArgs) -> R {
    let items = list_arg(&a, 0)?;
    let wanted = arg(&a, 1);
    items
        .iter()
        .position(|v| v == wanted || (string(v).ok().is_some_and(|s| Ok(s) == string(wanted))))
        .map(Value::from)
        .ok_or_else(|| "item not found".to_string())
}

fn keys(a: FuncArgs) -> R {
    let mut k: Vec<&String> = map(arg(&a, 0))?.keys().collect();
    k.sort();
    Ok(Value::Array(
        k.into_iter().map(|k| Value::from(k.as_str())).collect(),
    ))
}

fn values(a: FuncArgs) -> R {
    let m = map(arg(&a, 0))?;
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(|k| m[k].clone()).collect()))
}

fn length(a: FuncArgs) -> R {
    match arg(&a, 0) {
        Value::Array(items) => Ok(Value::from(items.len())),
        Value::Object(m) => Ok(Value::from(m.len())),
        Value::String(s) => Ok(Value::from(s.chars().count())),
        v => Err(format!(
            "a list, map or string is required, not {}",
            describe(v)
        )),
    }
}

fn lookup(a: FuncArgs) -> R {
    if a.len() > 3 {
        return Err(format!("expected 2 or 3 arguments, got {}", a.len()));
    }
    let m = map(arg(&a, 0))?;
    let key = str_arg(&a, 1)?;
    match (m.get(&key), a.get(2)) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(format!(
            "the map has no key {key:?} and no default is given"
        )),
    }
}

fn merge(a: FuncArgs) -> R {
    let mut out = Map::new();
    for v in a.iter().filter(|v| !v.is_null()) {
        for (k, v) in map(v)? {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

fn range(a: FuncArgs) -> R {
    let (start, limit, step) = match a.len() {
        1 => (0.0, num_arg(&a, 0)?, 1.0),
        2 => {
            let (s, l) = (num_arg(&a, 0)?, num_arg(&a, 1)?);
            (s, l, if l < s { -1.0 } else { 1.0 })
        }
        3 => (num_arg(&a, 0)?, num_arg(&a, 1)?, num_arg(&a, 2)?),
        n => return Err(format!("expected 1 to 3 arguments, got {n}")),
    };
    if step == 0.0 {
        return Err("step must not be zero".to_string());
    }
    if (step < 0.0 && limit > start) || (step > 0.0 && limit < start) {
        return Err("step goes the wrong way: the range would never reach its limit".to_string());
    }
    let count = ((limit - start) / step).ceil();
    if !count.is_finite() || count > MAX_ITEMS as f64 {
        return Err(format!(
            "more than {MAX_ITEMS} values would be generated; decrease the difference between start and limit or use a larger step"
        ));
    }
    let mut out = Vec::new();
    for i in 0..count.max(0.0) as usize {
        out.push(number(start + step * i as f64)?);
    }
    Ok(Value::Array(out))
}

fn reverse(a: FuncArgs) -> R {
    match arg(&a, 0) {
        Value::String(s) => Ok(Value::String(s.chars().rev().collect())),
        v => Ok(Value::Array(list(v)?.iter().rev().cloned().collect())),
    }
}

fn setunion(a: FuncArgs) -> R {
    let mut out = Vec::new();
    for v in a.iter() {
        out.extend(list(v)?.iter().cloned());
    }
    Ok(set(out))
}

fn setintersection(a: FuncArgs) -> R {
    let first = list_arg(&a, 0)?;
    let mut rest = Vec::new();
    for v in &a[1..] {
        rest.push(list(v)?);
    }
    Ok(set(first
        .iter()
        .filter(|v| rest.iter().all(|l| l.contains(v)))
        .cloned()
        .collect()))
}

fn setproduct(a: FuncArgs) -> R {
    if a.len() < 2 {
        return Err("at least two arguments are required".to_string());
    }
    let lists: Vec<&Vec<Value>> = a.iter().map(list).collect::<Result<_, _>>()?;
    let total = lists
        .iter()
        .try_fold(1usize, |acc, l| acc.checked_mul(l.len()));
    if total.is_none_or(|t| t > MAX_PRODUCT) {
        return Err(format!(
            "the product would have more than {MAX_PRODUCT} elements"
        ));
    }
    // Mixed element types become strings, as cty unifies them.
    let lists: Vec<Vec<Value>> = lists
        .into_iter()
        .map(|l| {
            let mixed = l.iter().any(|v| v.is_string()) && l.iter().any(|v| !v.is_string());
            if mixed {
                l.iter()
                    .map(|v| string(v).map(Value::String).unwrap_or_else(|_| v.clone()))
                    .collect()
            } else {
                l.clone()
            }
        })
        .collect();
    let mut out: Vec<Vec<Value>> = vec![Vec::new()];
    for l in &lists {
        let mut next = Vec::new();
        for prefix in &out {
            for v in l {
                let mut row = prefix.clone();
                row.push(v.clone());
                next.push(row);
            }
        }
        out = next;
    }
    Ok(Value::Array(out.into_iter().map(Value::Array).collect()))
}

fn slice(a: FuncArgs) -> R {
    let items = list_arg(&a, 0)?;
    let start = int_arg(&a, 1)?;
    let end = int_arg(&a, 2)?;
    if start < 0 || end < start || end as u64 > items.len() as u64 {
        return Err(format!(
            "cannot slice [{start}:{end}] from a list of {} elements",
            items.len()
        ));
    }
    Ok(Value::Array(items[start as usize..end as usize].to_vec()))
}

fn sort(a: FuncArgs) -> R {
    let mut out = Vec::new();
    for v in list_arg(&a, 0)? {
        out.push(string(v).map_err(|e| format!("cannot sort: {e}"))?);
    }
    out.sort();
    Ok(Value::Array(out.into_iter().map(Value::String).collect()))
}

fn zipmap(a: FuncArgs) -> R {
    let k = list_arg(&a, 0)?;
    let v = list_arg(&a, 1)?;
    if k.len() != v.len() {
        return Err(format!(
            "{} keys but {} values: the lists must be the same length",
            k.len(),
            v.len()
        ));
    }
    let mut out = Map::new();
    for (k, v) in k.iter().zip(v) {
        out.insert(string(k)?, v.clone());
    }
    Ok(Value::Object(out))
}

// Numbers.

fn abs(a: FuncArgs) -> R {
    number(num_arg(&a, 0)?.abs())
}

fn ceil(a: FuncArgs) -> R {
    number(num_arg(&a, 0)?.ceil())
}

fn floor(a: FuncArgs) -> R {
    number(num_arg(&a, 0)?.floor())
}

fn log(a: FuncArgs) -> R {
    let x = num_arg(&a, 0)?;
    let base = num_arg(&a, 1)?;
    number(x.ln() / base.ln())
}

fn extreme(a: &FuncArgs, pick: fn(f64, f64) -> f64) -> R {
    let mut best: Option<f64> = None;
    for v in a.iter() {
        let f = float(v)?;
        best = Some(best.map_or(f, |b| pick(b, f)));
    }
    number(best.ok_or("at least one number is required")?)
}

fn max(a: FuncArgs) -> R {
    extreme(&a, f64::max)
}

fn min(a: FuncArgs) -> R {
    extreme(&a, f64::min)
}

fn parseint(a: FuncArgs) -> R {
    let s = str_arg(&a, 0)?;
    let base = int_arg(&a, 1)?;
    if !(2..=62).contains(&base) {
        return Err(format!("base must be between 2 and 62, not {base}"));
    }
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(&s)),
    };
    if body.is_empty() {
        return Err(format!("cannot parse {s:?} as a base {base} integer"));
    }
    let mut n: i128 = 0;
    for c in body.chars() {
        let d = match c {
            '0'..='9' => c as i64 - '0' as i64,
            'a'..='z' => c as i64 - 'a' as i64 + 10,
            'A'..='Z' if base <= 36 => c as i64 - 'A' as i64 + 10,
            'A'..='Z' => c as i64 - 'A' as i64 + 36,
            _ => base,
        };
        if d >= base {
            return Err(format!("cannot parse {s:?} as a base {base} integer"));
        }
        n = n
            .checked_mul(base as i128)
            .and_then(|n| n.checked_add(d as i128))
            .filter(|n| *n <= i64::MAX as i128)
            .ok_or_else(|| format!("{s:?} is too large a number"))?;
    }
    Ok(Value::from(if negative { -n } else { n } as i64))
}

fn pow(a: FuncArgs) -> R {
    number(num_arg(&a, 0)?.powf(num_arg(&a, 1)?))
}

fn signum(a: FuncArgs) -> R {
    let f = num_arg(&a, 0)?;
    Ok(Value::from(if f > 0.0 {
        1
    } else if f < 0.0 {
        -1
    } else {
        0
    }))
}

// Encodings.

fn base64decode(a: FuncArgs) -> R {
    let bytes = B64
        .decode(str_arg(&a, 0)?.as_bytes())
        .map_err(|e| format!("invalid base64: {e}"))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| "the decoded bytes are not valid UTF-8".to_string())
}

fn base64encode(a: FuncArgs) -> R {
    Ok(Value::String(B64.encode(str_arg(&a, 0)?)))
}

fn csvdecode(a: FuncArgs) -> R {
    let rows = csv_rows(&str_arg(&a, 0)?)?;
    let mut rows = rows.into_iter();
    let header = rows.next().ok_or("missing header line")?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        if row.len() != header.len() {
            return Err(format!(
                "line {}: {} fields where the header has {}",
                i + 2,
                row.len(),
                header.len()
            ));
        }
        let mut m = Map::new();
        for (k, v) in header.iter().zip(row) {
            m.insert(k.clone(), Value::String(v));
        }
        out.push(Value::Object(m));
    }
    Ok(Value::Array(out))
}

/// RFC 4180 records: quoted fields may hold commas, quotes (doubled) and
/// line breaks.
fn csv_rows(s: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".to_string());
    }
    if any {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

fn from_json(v: serde_json::Value) -> R {
    Ok(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => number(n.as_f64().unwrap_or(f64::NAN))?,
        },
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => {
            Value::Array(items.into_iter().map(from_json).collect::<Result<_, _>>()?)
        }
        serde_json::Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k, from_json(v)?);
            }
            Value::Object(out)
        }
    })
}

fn jsondecode(a: FuncArgs) -> R {
    let v: serde_json::Value =
        serde_json::from_str(&str_arg(&a, 0)?).map_err(|e| format!("invalid JSON: {e}"))?;
    from_json(v)
}

/// JSON as Go writes it: keys sorted, `<`, `>` and `&` escaped.
fn json(v: &Value, depth: usize) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return Err(format!("values nested more than {MAX_DEPTH} deep"));
    }
    Ok(match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => json_string(s),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| json(i, depth + 1))
                .collect::<Result<_, _>>()?;
            format!("[{}]", parts.join(","))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut parts = Vec::new();
            for k in keys {
                parts.push(format!("{}:{}", json_string(k), json(&m[k], depth + 1)?));
            }
            format!("{{{}}}", parts.join(","))
        }
    })
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn jsonencode(a: FuncArgs) -> R {
    capped(json(arg(&a, 0), 0)?)
}

fn urlencode(a: FuncArgs) -> R {
    let mut out = String::new();
    for b in str_arg(&a, 0)?.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    Ok(Value::String(out))
}

fn yamldecode(a: FuncArgs) -> R {
    let v: serde_json::Value =
        serde_yaml::from_str(&str_arg(&a, 0)?).map_err(|e| format!("invalid YAML: {e}"))?;
    from_json(v)
}

/// YAML in go-cty-yaml's style: keys and strings double-quoted, block
/// lists and maps.
fn yaml(v: &Value, indent: usize, out: &mut String, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("values nested more than {MAX_DEPTH} deep"));
    }
    let pad = " ".repeat(indent);
    match v {
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&pad);
                }
                out.push_str("- ");
                yaml(item, indent + 2, out, depth + 1)?;
            }
        }
        Value::Object(m) if !m.is_empty() => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(&pad);
                }
                out.push_str(&json_string(k));
                out.push(':');
                match &m[k] {
                    Value::Array(l) if !l.is_empty() => {
                        out.push('\n');
                        out.push_str(&pad);
                        yaml(&m[k], indent, out, depth + 1)?;
                    }
                    Value::Object(o) if !o.is_empty() => {
                        out.push('\n');
                        out.push_str(&" ".repeat(indent + 2));
                        yaml(&m[k], indent + 2, out, depth + 1)?;
                    }
                    other => {
                        out.push(' ');
                        yaml(other, indent, out, depth + 1)?;
                    }
                }
            }
        }
        Value::Array(_) => out.push_str("[]\n"),
        Value::Object(_) => out.push_str("{}\n"),
        Value::String(s) => {
            out.push_str(&json_string(s));
            out.push('\n');
        }
        scalar => {
            out.push_str(&json(scalar, depth)?);
            out.push('\n');
        }
    }
    Ok(())
}

fn yamlencode(a: FuncArgs) -> R {
    let mut out = String::new();
    yaml(arg(&a, 0), 0, &mut out, 0)?;
    capped(out)
}

// Hashes and UUIDs.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn md5(a: FuncArgs) -> R {
    use md5::Digest as _;
    Ok(Value::String(hex(&md5::Md5::digest(str_arg(&a, 0)?))))
}

fn sha1(a: FuncArgs) -> R {
    use sha1::Digest as _;
    Ok(Value::String(hex(&sha1::Sha1::digest(str_arg(&a, 0)?))))
}

fn sha256(a: FuncArgs) -> R {
    use sha2::Digest as _;
    Ok(Value::String(hex(&sha2::Sha256::digest(str_arg(&a, 0)?))))
}

fn sha512(a: FuncArgs) -> R {
    use sha2::Digest as _;
    Ok(Value::String(hex(&sha2::Sha512::digest(str_arg(&a, 0)?))))
}

fn base64sha256(a: FuncArgs) -> R {
    use sha2::Digest as _;
    Ok(Value::String(
        B64.encode(sha2::Sha256::digest(str_arg(&a, 0)?)),
    ))
}

fn base64sha512(a: FuncArgs) -> R {
    use sha2::Digest as _;
    Ok(Value::String(
        B64.encode(sha2::Sha512::digest(str_arg(&a, 0)?)),
    ))
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hexits: String = s.chars().filter(|c| *c != '-').collect();
    if hexits.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hexits.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn uuidv5(a: FuncArgs) -> R {
    use sha1::Digest as _;
    let ns = str_arg(&a, 0)?;
    let name = str_arg(&a, 1)?;
    let ns = match ns.as_str() {
        "dns" => "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "url" => "6ba7b811-9dad-11d1-80b4-00c04fd430c8",
        "oid" => "6ba7b812-9dad-11d1-80b4-00c04fd430c8",
        "x500" => "6ba7b814-9dad-11d1-80b4-00c04fd430c8",
        other => other,
    };
    let ns = parse_uuid(ns)
        .ok_or_else(|| format!("namespace must be dns, url, oid, x500 or a UUID, not {ns:?}"))?;
    let mut h = sha1::Sha1::new();
    h.update(ns);
    h.update(name.as_bytes());
    let mut b: [u8; 16] = h.finalize()[..16].try_into().map_err(|_| "sha1")?;
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex(&b);
    Ok(Value::String(format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )))
}

// Dates: RFC 3339 timestamps, kept in their own offset.

struct Time {
    /// Seconds since the epoch, in UTC.
    secs: i64,
    nanos: u32,
    /// The offset written, in seconds east of UTC; `None` for `Z`.
    offset: Option<i32>,
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parse_time(s: &str) -> Result<Time, String> {
    let bad = || format!("{s:?} is not an RFC 3339 timestamp (like \"2018-01-02T23:12:01Z\")");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let t = s.get(r).ok_or_else(bad)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (h, mi, se) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i).ok_or_else(bad)?;
        if frac.is_empty() {
            return Err(bad());
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().map_err(|_| bad())?;
    }
    let offset = match s.get(i..).ok_or_else(bad)? {
        "Z" | "z" => None,
        tz if tz.len() == 6
            && (tz.starts_with('+') || tz.starts_with('-'))
            && tz.as_bytes()[3] == b':' =>
        {
            let oh = n(i + 1..i + 3)? as i32;
            let om = n(i + 4..i + 6)? as i32;
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            Some(sign * (oh * 3600 + om * 60))
        }
        _ => return Err(bad()),
    };
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let max_day = if mo == 2 && leap {
        29
    } else {
        *month_days
            .get((mo as usize).wrapping_sub(1))
            .ok_or_else(bad)?
    };
    if d == 0 || d > max_day || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let local = days_from_civil(y as i64, mo, d) * 86_400
        + i64::from(h) * 3600
        + i64::from(mi) * 60
        + i64::from(se);
    Ok(Time {
        secs: local - i64::from(offset.unwrap_or(0)),
        nanos,
        offset,
    })
}

struct Fields {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    weekday: usize,
}

fn fields(t: &Time) -> Fields {
    let local = t.secs + i64::from(t.offset.unwrap_or(0));
    let days = local.div_euclid(86_400);
    let rem = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Fields {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7) as usize,
    }
}

fn offset_text(offset: Option<i32>, colon: bool) -> String {
    let o = offset.unwrap_or(0);
    let sign = if o < 0 { '-' } else { '+' };
    let (h, m) = (o.abs() / 3600, o.abs() % 3600 / 60);
    if colon {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}")
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn formatdate(a: FuncArgs) -> R {
    let spec = str_arg(&a, 0)?;
    let t = parse_time(&str_arg(&a, 1)?)?;
    let f = fields(&t);
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted literal text; `''` is one quote.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("a quoted literal in the format is not closed".to_string()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        out.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        i += n;
        let month = MONTHS[(f.month as usize).saturating_sub(1) % 12];
        let hour12 = if f.hour.is_multiple_of(12) {
            12
        } else {
            f.hour % 12
        };
        let text = match (c, n) {
            ('Y', 4..) => format!("{:04}", f.year),
            ('Y', 2) => format!("{:02}", f.year.rem_euclid(100)),
            ('M', 4) => month.to_string(),
            ('M', 3) => month[..3].to_string(),
            ('M', 2) => format!("{:02}", f.month),
            ('M', 1) => f.month.to_string(),
            ('D', 2) => format!("{:02}", f.day),
            ('D', 1) => f.day.to_string(),
            ('E', 4) => DAYS[f.weekday].to_string(),
            ('E', 3) => DAYS[f.weekday][..3].to_string(),
            ('h', 2) => format!("{:02}", f.hour),
            ('h', 1) => f.hour.to_string(),
            ('H', 2) => format!("{hour12:02}"),
            ('H', 1) => hour12.to_string(),
            ('A', 2) => (if f.hour < 12 { "AM" } else { "PM" }).to_string(),
            ('a', 2) => (if f.hour < 12 { "am" } else { "pm" }).to_string(),
            ('m', 2) => format!("{:02}", f.minute),
            ('m', 1) => f.minute.to_string(),
            ('s', 2) => format!("{:02}", f.second),
            ('s', 1) => f.second.to_string(),
            ('Z', 5) => offset_text(t.offset, true),
            ('Z', 4) => offset_text(t.offset, false),
            ('Z', 3) if t.offset.unwrap_or(0) == 0 => "UTC".to_string(),
            ('Z', 3) => offset_text(t.offset, false),
            ('Z', 1) if t.offset.unwrap_or(0) == 0 => "Z".to_string(),
            ('Z', 1) => offset_text(t.offset, true),
            _ => {
                return Err(format!(
                    "invalid date format sequence {:?}; put literal letters in single quotes",
                    c.to_string().repeat(n)
                ));
            }
        };
        out.push_str(&text);
    }
    Ok(Value::String(out))
}

/// Go's duration text: `1h30m`, `-10m`, `1.5s`, `300ms`.
fn parse_duration(s: &str) -> Result<i128, String> {
    let bad = || format!("{s:?} is not a duration (like \"1h30m\", \"-10m\" or \"2.5s\")");
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        total += value * nanos;
    }
    if !total.is_finite() || total > 9.2e18 {
        return Err(format!("duration {s:?} is too long"));
    }
    Ok(if negative { -total } else { total } as i128)
}

fn timeadd(a: FuncArgs) -> R {
    let t = parse_time(&str_arg(&a, 0)?)?;
    let d = parse_duration(&str_arg(&a, 1)?)?;
    let total = i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos) + d;
    let secs = total.div_euclid(1_000_000_000);
    // Years 0 to 9999, as RFC 3339 writes them.
    if !(-62_167_219_200..=253_402_300_799).contains(&secs) {
        return Err("the result is outside the years 0 to 9999".to_string());
    }
    let t = Time {
        secs: secs as i64,
        nanos: 0,
        offset: t.offset,
    };
    let f = fields(&t);
    let zone = match t.offset {
        None | Some(0) => "Z".to_string(),
        o => offset_text(o, true),
    };
    Ok(Value::String(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        f.year, f.month, f.day, f.hour, f.minute, f.second
    )))
}

// Networks.

struct Cidr {
    /// The network's first address, as a number; IPv4 in the low 32 bits.
    base: u128,
    bits: u32,
    prefix: u32,
}

impl Cidr {
    fn parse(s: &str) -> Result<Cidr, String> {
        let bad =
            || format!("{s:?} is not an address prefix in CIDR notation (like \"10.0.0.0/16\")");
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let prefix: u32 = len.parse().map_err(|_| bad())?;
        let (addr, bits) = match ip.parse::<IpAddr>().map_err(|_| bad())? {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        if prefix > bits {
            return Err(bad());
        }
        let host_bits = bits - prefix;
        let mask = if host_bits >= 128 {
            0
        } else {
            !((1u128 << host_bits) - 1)
        };
        Ok(Cidr {
            base: addr & mask,
            bits,
            prefix,
        })
    }

    fn addr(&self, n: u128) -> String {
        if self.bits == 32 {
            Ipv4Addr::from(n as u32).to_string()
        } else {
            Ipv6Addr::from(n).to_string()
        }
    }

    fn host_bits(&self) -> u32 {
        self.bits - self.prefix
    }

    /// The `num`th subnet `newbits` longer than this prefix.
    fn subnet(&self, newbits: i64, num: i64) -> Result<Cidr, String> {
        let newbits = u32::try_from(newbits).map_err(|_| "newbits cannot be negative")?;
        let num = u128::try_from(num).map_err(|_| "the subnet number cannot be negative")?;
        self.nth(newbits, num)
    }

    fn nth(&self, newbits: u32, num: u128) -> Result<Cidr, String> {
        if newbits > self.host_bits() {
            return Err(format!(
                "{newbits} new bits would make a prefix longer than the {} bits of the address",
                self.bits
            ));
        }
        if newbits < 128 && num >> newbits != 0 {
            return Err(format!(
                "prefix extension of {newbits} bits does not accommodate a subnet numbered {num}"
            ));
        }
        let shift = self.host_bits() - newbits;
        let offset = if shift >= 128 { 0 } else { num << shift };
        Ok(Cidr {
            base: self.base | offset,
            bits: self.bits,
            prefix: self.prefix + newbits,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr(self.base), self.prefix)
    }
}

fn cidrhost(a: FuncArgs) -> R {
    let c = Cidr::parse(&str_arg(&a, 0)?)?;
    let n = int_arg(&a, 1)?;
    let hb = c.host_bits();
    let size: u128 = if hb >= 128 { u128::MAX } else { 1u128 << hb };
    let offset = if n >= 0 {
        let n = n as u128;
        if n >= size {
            return Err(format!(
                "prefix of {} bits has no host number {n}",
                c.prefix
            ));
        }
        n
    } else {
        let back = n.unsigned_abs() as u128;
        if back > size {
            return Err(format!(
                "prefix of {} bits has no host number {n}",
                c.prefix
            ));
        }
        size - back
    };
    Ok(Value::String(c.addr(c.base + offset)))
}

fn cidrnetmask(a: FuncArgs) -> R {
    let c = Cidr::parse(&str_arg(&a, 0)?)?;
    if c.bits != 32 {
        return Err("only IPv4 prefixes have a netmask".to_string());
    }
    let mask = if c.prefix == 0 {
        0
    } else {
        u32::MAX << (32 - c.prefix)
    };
    Ok(Value::String(Ipv4Addr::from(mask).to_string()))
}

fn cidrsubnet(a: FuncArgs) -> R {
    let c = Cidr::parse(&str_arg(&a, 0)?)?;
    Ok(Value::String(
        c.subnet(int_arg(&a, 1)?, int_arg(&a, 2)?)?.to_string(),
    ))
}

fn cidrsubnets(a: FuncArgs) -> R {
    let c = Cidr::parse(&str_arg(&a, 0)?)?;
    let mut out = Vec::new();
    // The next free address, as an offset into the prefix.
    let mut next: u128 = 0;
    let hb = c.host_bits();
    for (i, v) in a[1..].iter().enumerate() {
        let newbits = int(v)?;
        if newbits < 1 || newbits as u64 > u64::from(hb) {
            return Err(format!(
                "argument {}: {newbits} new bits do not fit the {hb} host bits of the prefix",
                i + 2
            ));
        }
        let shift = hb - newbits as u32;
        let size: u128 = if shift >= 128 { 0 } else { 1u128 << shift };
        // Align up to the subnet's size.
        let start = if size == 0 {
            next
        } else {
            next.div_ceil(size)
                .checked_mul(size)
                .ok_or("address space exhausted")?
        };
        let num = start.checked_div(size).unwrap_or(0);
        if newbits < 128 && num >> newbits != 0 {
            return Err(format!(
                "argument {}: not enough remaining address space for a subnet with a prefix of {} bits after {}",
                i + 2,
                c.prefix + newbits as u32,
                out.last().map_or_else(
                    || c.to_string(),
                    |v: &Value| v.as_str().unwrap_or_default().to_string()
                )
            ));
        }
        out.push(Value::String(c.nth(newbits as u32, num)?.to_string()));
        next = start.saturating_add(size.max(1));
    }
    Ok(Value::Array(out))
}

// Conversions.

fn tobool(a: FuncArgs) -> R {
    match arg(&a, 0) {
        Value::Null => Ok(Value::Null),
        v => super::expr::as_bool(v)
            .map(Value::Bool)
            .ok_or_else(|| format!("cannot convert {} to bool", describe(v))),
    }
}

fn tonumber(a: FuncArgs) -> R {
    match arg(&a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Number(n) => Ok(Value::Number(*n)),
        v @ Value::String(s) => match s.trim().parse::<i64>() {
            Ok(i) => Ok(Value::from(i)),
            Err(_) => number(float(v).map_err(|_| format!("cannot convert {s:?} to number"))?),
        },
        v => Err(format!("cannot convert {} to number", describe(v))),
    }
}

fn tostring(a: FuncArgs) -> R {
    match arg(&a, 0) {
        Value::Null => Ok(Value::Null),
        v => string(v)
            .map(Value::String)
            .map_err(|_| format!("cannot convert {} to string", describe(v))),
    }
}

fn tolist(a: FuncArgs) -> R {
    match arg(&a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Array(items) => {
            // A list holds one type: mixed scalars become strings.
            if items.iter().any(Value::is_string)
                && items.iter().all(|v| !v.is_array() && !v.is_object())
            {
                return Ok(strings(items));
            }
            Ok(Value::Array(items.clone()))
        }
        v => Err(format!("cannot convert {} to list", describe(v))),
    }
}

fn toset(a: FuncArgs) -> R {
    match tolist(a)? {
        Value::Array(items) => Ok(set(items)),
        other => Ok(other),
    }
}

fn tomap(a: FuncArgs) -> R {
    match arg(&a, 0) {
        Value::Null => Ok(Value::Null),
        Value::Object(m) => Ok(Value::Object(m.clone())),
        v => Err(format!("cannot convert {} to map", describe(v))),
    }
}

// Files.

fn basename(a: FuncArgs) -> R {
    let p = str_arg(&a, 0)?;
    let t = p.trim_end_matches('/');
    Ok(Value::from(match t {
        "" if p.is_empty() => ".",
        "" => "/",
        t => t.rsplit('/').next().unwrap_or(t),
    }))
}

fn dirname(a: FuncArgs) -> R {
    let p = str_arg(&a, 0)?;
    let t = p.trim_end_matches('/');
    Ok(Value::from(match t.rfind('/') {
        None if p.starts_with('/') => "/",
        None => ".",
        Some(0) => "/",
        Some(i) => t[..i].trim_end_matches('/'),
    }))
}

fn read(name: &str) -> Result<String, String> {
    FILES.with(|f| match f.borrow().read(name) {
        None => Err(
            "files cannot be read here: this job came without a file to read beside (run it from a file: edge job run FILE)"
                .to_string(),
        ),
        Some(Err(e)) => Err(format!("cannot read {name:?}: {e}")),
        Some(Ok(text)) => Ok(text),
    })
}

fn file(a: FuncArgs) -> R {
    Ok(Value::String(read(&str_arg(&a, 0)?)?))
}

fn filebase64(a: FuncArgs) -> R {
    Ok(Value::String(B64.encode(read(&str_arg(&a, 0)?)?)))
}

fn fileexists(a: FuncArgs) -> R {
    let name = str_arg(&a, 0)?;
    FILES.with(|f| match f.borrow().read(&name) {
        None => Err(
            "files cannot be read here: this job came without a file to read beside (run it from a file: edge job run FILE)"
                .to_string(),
        ),
        Some(r) => Ok(Value::Bool(r.is_ok())),
    })
}

// Refused.

fn abspath(_: FuncArgs) -> R {
    Err("not supported: the job is read where it is submitted, so an absolute path on this machine means nothing where it runs".to_string())
}

fn pathexpand(_: FuncArgs) -> R {
    Err("not supported: `~` on this machine means nothing where the job runs".to_string())
}

fn fileset(_: FuncArgs) -> R {
    Err("not supported: edge reads named files beside the job file but does not list directories; name the files".to_string())
}

fn bcrypt(_: FuncArgs) -> R {
    Err("not supported: bcrypt salts at random, so each read of the same file would change the job; hash once and pass the result in a variable".to_string())
}

fn rsadecrypt(_: FuncArgs) -> R {
    Err("not supported: pass secrets with `secret` blocks or variables, not encrypted in the job file".to_string())
}

fn timestamp(_: FuncArgs) -> R {
    Err("not supported: a job file reads the same each time; pass the time in a variable (-var now=$(date -u +%Y-%m-%dT%H:%M:%SZ))".to_string())
}

fn uuidv4(_: FuncArgs) -> R {
    Err("not supported: a random UUID would change the job on each read of the same file; use uuidv5(namespace, name), or pass one in a variable".to_string())
}

#[cfg(test)]
mod tests;
