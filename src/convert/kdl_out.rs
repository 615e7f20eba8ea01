//! Writing KDL 1.0 text: quoting, identifiers and indented nodes.

/// `s` as a KDL 1.0 string literal (double quotes, escapes).
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A node name or property key: bare when it is a plain identifier, else
/// quoted.
pub fn ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        && !matches!(s, "true" | "false" | "null");
    if plain {
        s.to_string()
    } else {
        q(s)
    }
}

/// One KDL value.
#[derive(Debug, Clone, PartialEq)]
pub enum KVal {
    Str(String),
    Bool(bool),
    Int(i64),
}

impl KVal {
    fn text(&self) -> String {
        match self {
            KVal::Str(s) => q(s),
            KVal::Bool(b) => b.to_string(),
            KVal::Int(i) => i.to_string(),
        }
    }
}

/// One KDL node with the comments written above it and after it.
#[derive(Debug, Clone, Default)]
pub struct KNode {
    pub comments: Vec<String>,
    pub name: String,
    pub args: Vec<KVal>,
    pub props: Vec<(String, KVal)>,
    pub children: Option<Vec<KNode>>,
    pub trailing: Option<String>,
    /// A blank line before the node (kept from the input).
    pub blank_before: bool,
}

impl KNode {
    pub fn new(name: &str) -> KNode {
        KNode {
            name: name.to_string(),
            ..Default::default()
        }
    }
    pub fn arg(mut self, v: KVal) -> KNode {
        self.args.push(v);
        self
    }
    pub fn str_arg(self, s: impl Into<String>) -> KNode {
        self.arg(KVal::Str(s.into()))
    }
    pub fn prop(mut self, k: &str, v: KVal) -> KNode {
        self.props.push((k.to_string(), v));
        self
    }

    pub fn write(&self, out: &mut String, depth: usize) {
        let pad = "    ".repeat(depth);
        if self.blank_before {
            out.push('\n');
        }
        for c in &self.comments {
            if c.is_empty() {
                out.push_str(&pad);
                out.push_str("//\n");
            } else {
                out.push_str(&pad);
                out.push_str("// ");
                out.push_str(c);
                out.push('\n');
            }
        }
        if self.name.is_empty() {
            // A comment-only entry (the comments at the end of a file).
            return;
        }
        out.push_str(&pad);
        out.push_str(&ident(&self.name));
        for a in &self.args {
            out.push(' ');
            out.push_str(&a.text());
        }
        for (k, v) in &self.props {
            out.push(' ');
            out.push_str(&ident(k));
            out.push('=');
            out.push_str(&v.text());
        }
        if let Some(children) = &self.children {
            if children.is_empty() {
                out.push_str(" {}");
            } else {
                out.push_str(" {\n");
                for c in children {
                    c.write(out, depth + 1);
                }
                out.push_str(&pad);
                out.push('}');
            }
        }
        if let Some(t) = &self.trailing {
            out.push_str(" // ");
            out.push_str(t);
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_identifiers() {
        assert_eq!(q("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(ident("cache-from"), "cache-from");
        assert_eq!(ident("docker.io/alpine"), "\"docker.io/alpine\"");
        assert_eq!(ident("1x"), "\"1x\"");
        assert_eq!(ident("true"), "\"true\"");
    }
}
