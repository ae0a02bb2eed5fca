//! Where each value of a Compose file is written: the line and column of
//! every path (`services.web.ports[1]`), so an error found after parsing,
//! merging or converting still names the line it is about.

use std::collections::HashMap;

/// One file's positions. Built best-effort: a file the position reader
/// cannot take (YAML anchors and aliases) still loads, its errors then
/// name the path without a line.
#[derive(Debug, Default, Clone)]
pub struct Positions {
    at: HashMap<String, (usize, usize)>,
}

impl Positions {
    pub fn of(text: &str) -> Positions {
        let mut at = HashMap::new();
        if let Ok(node) = marked_yaml::parse_yaml(0, text) {
            walk(&node, String::new(), &mut at);
        }
        Positions { at }
    }

    /// The line and column of `path`, or of its nearest enclosing value
    /// that is written in this file.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        self.nearest(path).map(|(_, at)| at)
    }

    /// Like [`Positions::find`], with the length of the part of `path`
    /// found: the file that writes more of a path is the one it came from.
    pub fn nearest(&self, path: &str) -> Option<(usize, (usize, usize))> {
        let mut p = path;
        loop {
            if let Some(found) = self.at.get(p) {
                return Some((p.len(), *found));
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

fn walk(node: &marked_yaml::Node, path: String, at: &mut HashMap<String, (usize, usize)>) {
    match node {
        marked_yaml::Node::Mapping(m) => {
            for (k, v) in m.iter() {
                let child = if path.is_empty() {
                    k.as_str().to_string()
                } else {
                    format!("{path}.{}", k.as_str())
                };
                if let Some(s) = k.span().start() {
                    at.insert(child.clone(), (s.line(), s.column()));
                }
                walk(v, child, at);
            }
        }
        marked_yaml::Node::Sequence(s) => {
            for (i, v) in s.iter().enumerate() {
                let child = format!("{path}[{i}]");
                if let Some(m) = v.span().start() {
                    at.insert(child.clone(), (m.line(), m.column()));
                }
                walk(v, child, at);
            }
        }
        marked_yaml::Node::Scalar(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_lines() {
        let p = Positions::of(
            "services:\n  web:\n    image: x\n    ports:\n      - \"80:80\"\n      - 443:8043\n",
        );
        assert_eq!(p.find("services.web.image"), Some((3, 5)));
        assert_eq!(p.find("services.web.ports[1]"), Some((6, 9)));
        assert_eq!(
            p.find("services.web.deploy.replicas"),
            p.find("services.web"),
            "a path the file does not write falls back to its enclosing key"
        );
        let written = |path: &str| p.nearest(path).is_some_and(|(n, _)| n == path.len());
        assert!(written("services.web.ports") && !written("services.db"));
    }
}
