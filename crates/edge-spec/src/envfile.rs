//! Compose's env-file format (`KEY=value` lines) for a task's `env_file`.
//!
//! Written here rather than taken from `dotenvy`: that crate substitutes
//! `${VAR}` from the reading process's environment, while edge resolves
//! `${...}` on the agent (`${EDGE_PORT_http}`), so values are kept as
//! written.

/// A line of the file that cannot be read: 1-based line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

/// The file's variables in order; a later line for the same key wins.
///
/// Blank lines and lines starting with `#` are skipped; `export ` before a
/// key is allowed; a value is taken literally when unquoted (trimmed, and a
/// ` #` starts a comment), between single quotes, or between double quotes
/// with `\n`, `\t`, `\r`, `\"` and `\\` escapes. Quoted values may span
/// lines.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((n, line)) = lines.next() {
        let err = |message: String| EnvFileError { line: n, message };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, rest)) = line.split_once('=') else {
            return Err(err(format!(
                "{:?} has no `=`: write KEY=value (edge does not take values from the shell)",
                shorten(line)
            )));
        };
        let key = key.trim_end();
        if let Some(why) = key_problem(key) {
            return Err(err(format!("variable name {:?} {why}", shorten(key))));
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let mut body = String::new();
                let mut tail = &rest[1..];
                let mut at = n;
                loop {
                    match closing(tail, q) {
                        Some((part, after)) => {
                            body.push_str(part);
                            let after = after.trim();
                            if !after.is_empty() && !after.starts_with('#') {
                                return Err(EnvFileError {
                                    line: at,
                                    message: format!(
                                        "text after the closing quote of {key}: {:?}",
                                        shorten(after)
                                    ),
                                });
                            }
                            break;
                        }
                        None => {
                            body.push_str(tail);
                            body.push('\n');
                            match lines.next() {
                                Some((m, next)) => {
                                    at = m;
                                    tail = next;
                                }
                                None => {
                                    return Err(err(format!(
                                        "the value of {key} opens a {q} quote that is never closed"
                                    )));
                                }
                            }
                        }
                    }
                }
                if q == '"' { unescape(&body) } else { body }
            }
            _ => match rest.find(" #").or_else(|| rest.find("\t#")) {
                Some(i) => rest[..i].trim_end().to_string(),
                None => rest.trim_end().to_string(),
            },
        };
        if value.contains('\0') {
            return Err(err(format!("the value of {key} holds a NUL byte")));
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// The text up to the closing quote `q` (a double quote may be escaped)
/// and what follows it.
fn closing(s: &str, q: char) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if q == '"' && !escaped => escaped = true,
            c if c == q && !escaped => return Some((&s[..i], &s[i + 1..])),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn key_problem(key: &str) -> Option<&'static str> {
    let mut chars = key.chars();
    match chars.next() {
        None => Some("is empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            Some("must start with a letter or `_`")
        }
        _ if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) => {
            Some("may hold only letters, digits, `_`, `.` and `-`")
        }
        _ => None,
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_compose_env_files() {
        let text = "# app settings\n\nexport MODE=prod\nURL = http://db:5432/x # where\nEMPTY=\nQ=\"a \\\"b\\\"\\nc\"\nS='${EDGE_PORT_http} # kept'\nML=\"one\ntwo\"\nMODE=dev\n";
        let got = parse(text).unwrap();
        assert_eq!(
            got,
            [
                ("MODE", "prod"),
                ("URL", "http://db:5432/x"),
                ("EMPTY", ""),
                ("Q", "a \"b\"\nc"),
                ("S", "${EDGE_PORT_http} # kept"),
                ("ML", "one\ntwo"),
                ("MODE", "dev"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, line, want) in [
            ("A=1\nJUSTNAME\n", 2, "has no `=`"),
            ("1X=2", 1, "must start with a letter"),
            ("A B=2", 1, "may hold only"),
            ("A=\"open\nstill\n", 1, "never closed"),
            ("A=\"x\" y", 1, "after the closing quote"),
            ("=v", 1, "is empty"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e:?}");
            assert!(e.message.contains(want), "{text:?}: {e:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse(&text);
        }

        #[test]
        fn quoted_values_come_back_as_written(
            pairs in proptest::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,8}", "\\PC{0,20}"), 0..8)
        ) {
            let text: String = pairs
                .iter()
                .map(|(k, v)| {
                    let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                    format!("{k}=\"{v}\"\n")
                })
                .collect();
            let got = parse(&text).unwrap();
            prop_assert_eq!(got, pairs);
        }
    }
}
