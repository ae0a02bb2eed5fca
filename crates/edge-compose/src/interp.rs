//! Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+other}`,
//! `${VAR+other}` and `$$` for a literal `$`, with defaults and messages
//! themselves interpolated, as in the Compose specification.

use std::collections::BTreeMap;

/// Why a string cannot be interpolated; the caller adds where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpError {
    /// `${VAR:?message}` (or `?`) with VAR unset (or empty).
    Required { var: String, message: String },
    /// A `${` without its `}`, an empty or bad name, an unknown operator.
    Syntax(String),
}

/// The variables interpolation reads: the shell's environment over the
/// project's `.env` files, as Compose orders them.
pub type Vars = BTreeMap<String, String>;

/// `text` with every reference replaced.
pub fn interpolate(text: &str, vars: &Vars) -> Result<String, InterpError> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Parser {
        chars: &chars,
        at: 0,
        vars,
    };
    p.text(None)
}

struct Parser<'a> {
    chars: &'a [char],
    at: usize,
    vars: &'a Vars,
}

impl Parser<'_> {
    /// Text up to the end, or up to an unnested `}` when inside a braced
    /// reference's default (`until` is then `Some('}')`, left unconsumed).
    fn text(&mut self, until: Option<char>) -> Result<String, InterpError> {
        let mut out = String::new();
        let mut depth = 0usize;
        while let Some(&c) = self.chars.get(self.at) {
            if Some(c) == until && depth == 0 {
                return Ok(out);
            }
            if c != '$' {
                // Braces in a default's text (`${A:-{x}}`) pair up as
                // compose-go pairs them.
                if until.is_some() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                }
                out.push(c);
                self.at += 1;
                continue;
            }
            self.at += 1;
            match self.chars.get(self.at) {
                Some('$') => {
                    out.push('$');
                    self.at += 1;
                }
                Some('{') => {
                    self.at += 1;
                    out.push_str(&self.braced()?);
                }
                Some(&n) if is_name_start(n) => {
                    let name = self.name();
                    out.push_str(self.vars.get(&name).map_or("", String::as_str));
                }
                // A lone `$` (at the end, before a space or a digit) is
                // kept, as compose-go keeps it.
                _ => out.push('$'),
            }
        }
        match until {
            Some(_) => Err(InterpError::Syntax(
                "a `${` is not closed by `}`".to_string(),
            )),
            None => Ok(out),
        }
    }

    fn name(&mut self) -> String {
        let start = self.at;
        while self
            .chars
            .get(self.at)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    /// After `${`: the name, an optional operator and its word, the `}`.
    fn braced(&mut self) -> Result<String, InterpError> {
        if !self.chars.get(self.at).copied().is_some_and(is_name_start) {
            let rest: String = self.chars[self.at..].iter().take(20).collect();
            return Err(InterpError::Syntax(format!(
                "`${{{rest}` does not start with a variable name (letters, digits and `_`, not \
                 starting with a digit); write `$$` for a literal `$`"
            )));
        }
        let name = self.name();
        let value = self.vars.get(&name);
        let op: String = match self.chars.get(self.at) {
            Some('}') => {
                self.at += 1;
                return Ok(value.cloned().unwrap_or_default());
            }
            Some(':') => {
                self.at += 1;
                match self.chars.get(self.at) {
                    Some(&c @ ('-' | '?' | '+')) => {
                        self.at += 1;
                        format!(":{c}")
                    }
                    _ => return Err(self.bad_operator(&name)),
                }
            }
            Some(&c @ ('-' | '?' | '+')) => {
                self.at += 1;
                c.to_string()
            }
            None => {
                return Err(InterpError::Syntax(format!(
                    "`${{{name}` is not closed by `}}`"
                )));
            }
            Some(_) => return Err(self.bad_operator(&name)),
        };
        let word = self.text(Some('}'))?;
        self.at += 1;
        let set = value.is_some();
        let non_empty = value.is_some_and(|v| !v.is_empty());
        let present = if op.starts_with(':') { non_empty } else { set };
        let value = value.cloned().unwrap_or_default();
        match op.trim_start_matches(':') {
            "-" => Ok(if present { value } else { word }),
            "+" => Ok(if present { word } else { String::new() }),
            _ if present => Ok(value),
            _ => Err(InterpError::Required {
                message: if word.is_empty() {
                    format!("required variable {name} is missing a value")
                } else {
                    word
                },
                var: name,
            }),
        }
    }

    fn bad_operator(&self, name: &str) -> InterpError {
        let found: String = self.chars[self.at..].iter().take(10).collect();
        InterpError::Syntax(format!(
            "`${{{name}` is followed by {found:?}: expected `}}`, `:-`, `-`, `:?`, `?`, `:+` or `+`"
        ))
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars() -> Vars {
        [("A", "alpha"), ("EMPTY", ""), ("PORT", "8043")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(s: &str) -> Result<String, InterpError> {
        interpolate(s, &vars())
    }

    #[test]
    fn forms_of_the_specification() {
        for (input, want) in [
            ("$A", "alpha"),
            ("${A}", "alpha"),
            ("x${A}y", "xalphay"),
            ("$A.b", "alpha.b"),
            ("$$A", "$A"),
            ("$${A}", "${A}"),
            ("${UNSET}", ""),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("${A:-d}", "alpha"),
            ("${A:+set}", "set"),
            ("${EMPTY:+set}", ""),
            ("${EMPTY+set}", "set"),
            ("${UNSET+set}", ""),
            ("${UNSET:-${A}}", "alpha"),
            ("${UNSET:-${UNSET2:-deep}}", "deep"),
            ("${UNSET:-{x}}", "{x}"),
            ("443:${PORT}", "443:8043"),
            ("cost $5", "cost $5"),
            ("end$", "end$"),
            ("${A:?must}", "alpha"),
        ] {
            assert_eq!(run(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn a_required_variable_names_itself() {
        assert_eq!(
            run("${UNSET:?set UNSET to the host port}"),
            Err(InterpError::Required {
                var: "UNSET".into(),
                message: "set UNSET to the host port".into()
            })
        );
        assert_eq!(
            run("${EMPTY?}"),
            Ok(String::new()),
            "`?` only asks for the variable to be set"
        );
        let Err(InterpError::Required { message, .. }) = run("${EMPTY:?}") else {
            panic!("empty with :? is an error");
        };
        assert!(message.contains("EMPTY"), "{message}");
    }

    #[test]
    fn broken_references_are_errors() {
        for bad in ["${A", "${", "${}", "${1A}", "${A:x}", "${A:-x", "${A!}"] {
            assert!(
                matches!(run(bad), Err(InterpError::Syntax(_))),
                "{bad}: {:?}",
                run(bad)
            );
        }
    }

    proptest! {
        #[test]
        fn text_without_dollars_is_kept(s in "[^$]*") {
            prop_assert_eq!(run(&s), Ok(s.clone()));
        }

        #[test]
        fn doubled_dollars_give_the_text_back(s in ".*") {
            let escaped = s.replace('$', "$$");
            prop_assert_eq!(run(&escaped), Ok(s.clone()));
        }

        #[test]
        fn any_input_is_an_answer_or_a_reason(s in "[${}:?+A-Z_a-z0-9 -]*") {
            match run(&s) {
                // Each reference is at least two characters and the
                // longest value five: the answer is bounded by the input.
                Ok(out) => prop_assert!(out.len() <= 3 * s.len()),
                Err(InterpError::Syntax(m)) | Err(InterpError::Required { message: m, .. }) => {
                    prop_assert!(!m.is_empty())
                }
            }
        }
    }
}
