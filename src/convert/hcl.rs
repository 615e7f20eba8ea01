//! docker-bake.hcl → KDL nodes.

use std::ops::Range;

use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::structure::{Attribute, Block, Body, Structure};
use hcl_edit::template::{Element, Template};
use hcl_edit::{Decorate, Span as _};

use super::kdl_out::{KNode, KVal};
use crate::diag::{suggest, Diag, Diagnostics};
use crate::source::{FileId, Span};

/// Bake's target attributes and the KDL node each becomes.
const TARGET_ATTRS: &[(&str, &str)] = &[
    ("description", "description"),
    ("context", "context"),
    ("contexts", "contexts"),
    ("dockerfile", "dockerfile"),
    ("dockerfile-inline", "dockerfile-inline"),
    ("args", "arg"),
    ("annotations", "annotation"),
    ("attest", "attest"),
    ("labels", "label"),
    ("tags", "tags"),
    ("cache-from", "cache-from"),
    ("cache-to", "cache-to"),
    ("target", "stage"),
    ("secret", "secret"),
    ("ssh", "ssh"),
    ("platforms", "platforms"),
    ("output", "output"),
    ("pull", "pull"),
    ("no-cache", "no-cache"),
    ("network", "network"),
    ("no-cache-filter", "no-cache-filter"),
    ("inherits", "inherits"),
    ("matrix", "matrix"),
    ("name", "name"),
];

/// Convert one HCL file: its nodes, and the renames of matrix targets
/// (bake label → KDL name template).
pub fn convert_file(
    id: FileId,
    src: &str,
    diags: &mut Diagnostics,
) -> (Vec<KNode>, Vec<(String, String)>) {
    let body = match hcl_edit::parser::parse_body(src) {
        Ok(b) => b,
        Err(e) => {
            let at = line_col_offset(src, e.location().line(), e.location().column());
            let end = src[at..].chars().next().map_or(at, |c| at + c.len_utf8());
            diags.push(
                Diag::new(
                    "mybake::convert::syntax",
                    format!("invalid HCL: {}", e.message()),
                )
                .label(Span::new(id, at, end), "here"),
            );
            return (Vec::new(), Vec::new());
        }
    };
    let mut c = Conv {
        id,
        src,
        diags,
        renames: Vec::new(),
    };
    let mut nodes = c.body(&body);
    if let Some(trailing) = body.decor().suffix() {
        let (comments, _) = comments_of(trailing);
        if !comments.is_empty() {
            let mut n = KNode::new("");
            n.comments = comments;
            // A comment-only "node": written as its comments.
            nodes.push(n);
        }
    }
    (nodes, c.renames)
}

/// Byte offset of a 1-based line and column.
fn line_col_offset(src: &str, line: usize, col: usize) -> usize {
    let mut off = 0;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let mut o = off;
            for (n, ch) in l.chars().enumerate() {
                if n + 1 == col {
                    return o;
                }
                o += ch.len_utf8();
            }
            return o.min(src.len());
        }
        off += l.len();
    }
    src.len()
}

/// The comments in a decor string (`#`, `//` and `/* */`), one entry per
/// line, and whether a blank line precedes them.
fn comments_of(raw: &str) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut blank = false;
    let mut rest = raw;
    let mut newlines = 0;
    while !rest.is_empty() {
        if rest.starts_with('#') || rest.starts_with("//") {
            let skip = if rest.starts_with('#') { 1 } else { 2 };
            let end = rest.find('\n').unwrap_or(rest.len());
            out.push(rest[skip..end].trim().to_string());
            rest = &rest[end..];
        } else if let Some(body) = rest.strip_prefix("/*") {
            let end = body.find("*/").unwrap_or(body.len());
            for l in body[..end].lines() {
                let l = l.trim().trim_start_matches('*').trim();
                out.push(l.to_string());
            }
            while out.last().is_some_and(String::is_empty) {
                out.pop();
            }
            rest = body.get(end + 2..).unwrap_or("");
        } else {
            let ch = rest.chars().next().unwrap_or(' ');
            if ch == '\n' {
                newlines += 1;
                if newlines >= 2 && out.is_empty() {
                    blank = true;
                }
            } else if !ch.is_whitespace() {
                newlines = 0;
            }
            rest = &rest[ch.len_utf8()..];
        }
    }
    // The line ending a comment counts as one newline, not a blank line.
    (out, blank)
}

/// The comments inside an expression's text (between list elements,
/// object entries, …): `#`, `//` and `/* */` outside string literals,
/// interpolations' strings and heredocs.
fn inner_comments(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    // Stack of contexts: `false` = code (with its brace depth), `true` = string.
    let mut stack: Vec<(bool, usize)> = vec![(false, 0)];
    let mut i = 0;
    while i < b.len() {
        let (in_str, depth) = *stack.last().unwrap_or(&(false, 0));
        let rest = &text[i..];
        if in_str {
            match b[i] {
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                b'$' | b'%' if rest[1..].starts_with('{') => {
                    stack.push((false, 0));
                    i += 1;
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        if rest.starts_with('#') || rest.starts_with("//") {
            let skip = if rest.starts_with('#') { 1 } else { 2 };
            let end = rest.find('\n').unwrap_or(rest.len());
            out.push(rest[skip..end].trim().to_string());
            i += end;
            continue;
        }
        if let Some(body) = rest.strip_prefix("/*") {
            let end = body.find("*/").unwrap_or(body.len());
            for l in body[..end].lines() {
                let l = l.trim().trim_start_matches('*').trim();
                if !l.is_empty() {
                    out.push(l.to_string());
                }
            }
            i += 2 + end + 2;
            continue;
        }
        if let Some(h) = rest.strip_prefix("<<") {
            let h = h.strip_prefix('-').unwrap_or(h);
            let id: String = h
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !id.is_empty() {
                // Skip to the line that closes the heredoc.
                let mut at = text[i..].find('\n').map_or(text.len(), |o| i + o + 1);
                let mut closed = text.len();
                while at < text.len() {
                    let end = text[at..].find('\n').map_or(text.len(), |o| at + o + 1);
                    if text[at..end].trim() == id {
                        closed = end;
                        break;
                    }
                    at = end;
                }
                i = closed;
                continue;
            }
        }
        match b[i] {
            b'"' => stack.push((true, 0)),
            b'{' => {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
            }
            b'}' if depth == 0 && stack.len() > 1 => {
                stack.pop();
            }
            b'}' => {
                if let Some(top) = stack.last_mut() {
                    top.1 = top.1.saturating_sub(1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

struct Conv<'a> {
    id: FileId,
    src: &'a str,
    diags: &'a mut Diagnostics,
    renames: Vec<(String, String)>,
}

impl Conv<'_> {
    fn span(&self, r: Option<Range<usize>>) -> Span {
        match r {
            Some(r) => Span::new(self.id, r.start, r.end),
            None => Span::new(self.id, 0, 0),
        }
    }

    fn err(&mut self, at: Option<Range<usize>>, msg: impl Into<String>, label: &str) -> Diag {
        let span = self.span(at);
        Diag::new("mybake::convert::unsupported", msg).label(span, label.to_string())
    }

    fn push(&mut self, d: Diag) {
        self.diags.push(d);
    }

    /// The HCL text of an expression, as written.
    fn text(&self, e: &Expression) -> String {
        match e.span() {
            Some(r) => self.src[r].trim().to_string(),
            None => e.to_string().trim().to_string(),
        }
    }

    /// The comments above a structure and after it on its line.
    fn decorate(&self, n: &mut KNode, decor: &hcl_edit::repr::Decor) {
        if let Some(p) = decor.prefix() {
            let mut c = comments_of(p).0;
            c.append(&mut n.comments);
            n.comments = c;
        }
        if let Some(s) = decor.suffix() {
            let (c, _) = comments_of(s);
            if !c.is_empty() {
                n.trailing = Some(c.join(" "));
            }
        }
    }

    /// Whether the text between two structures holds a blank line.
    fn blank_between(&self, prev_end: Option<usize>, start: Option<Range<usize>>) -> bool {
        let (Some(a), Some(b)) = (prev_end, start.map(|r| r.start)) else {
            return false;
        };
        let gap = self.src.get(a..b).unwrap_or("");
        let mut lines = gap.split('\n');
        lines.next();
        let rest: Vec<&str> = lines.collect();
        // The last piece is the indentation before the structure itself.
        rest.len() > 1 && rest[..rest.len() - 1].iter().any(|l| l.trim().is_empty())
    }

    fn body(&mut self, body: &Body) -> Vec<KNode> {
        let mut out = Vec::new();
        let mut prev_end = None;
        for s in body.iter() {
            let blank = self.blank_between(prev_end, s.span());
            prev_end = s.span().map(|r| r.end);
            match s {
                Structure::Attribute(a) => {
                    let d = self
                        .err(
                            a.span(),
                            format!(
                                "top-level attribute `{}` cannot be carried over",
                                a.key.as_str()
                            ),
                            "not a variable, group, target or function",
                        )
                        .help(format!(
                            "declare it as a variable: `variable \"{}\" {{ default = … }}`",
                            a.key.as_str()
                        ));
                    self.push(d);
                }
                Structure::Block(b) => {
                    let node = match b.ident.as_str() {
                        "variable" => self.variable(b),
                        "group" => self.group(b),
                        "target" => self.target(b),
                        "function" => self.function(b),
                        other => {
                            let d = self
                                .err(
                                    b.ident.span(),
                                    format!("unknown bake block `{other}`"),
                                    "not a variable, group, target or function",
                                )
                                .help_opt(suggest(
                                    other,
                                    ["variable", "group", "target", "function"],
                                ));
                            self.push(d);
                            None
                        }
                    };
                    if let Some(mut n) = node {
                        self.decorate(&mut n, b.decor());
                        n.blank_before = blank && !out.is_empty();
                        out.push(n);
                    }
                }
            }
        }
        out
    }

    /// The comments before a block's closing brace, as a comment-only
    /// child.
    /// `c`, the KDL child of attribute `a`, with `a`'s comments (around it
    /// and inside its value) carried over.
    fn push_child(&self, mut c: KNode, a: &Attribute, children: &mut Vec<KNode>) {
        self.decorate(&mut c, a.decor());
        if let Some(r) = a.value.span() {
            c.comments.extend(inner_comments(&self.src[r]));
        }
        children.push(c);
    }

    /// The KDL node `kind "name" { children }` of block `b`, with the
    /// comments before its closing brace.
    fn block_node(&self, kind: &str, name: String, b: &Block, mut children: Vec<KNode>) -> KNode {
        self.closing_comments(b, &mut children);
        let mut n = KNode::new(kind).str_arg(name);
        n.children = Some(children);
        n
    }

    fn closing_comments(&self, b: &Block, children: &mut Vec<KNode>) {
        if let Some(sfx) = b.body.decor().suffix() {
            let (c, _) = comments_of(sfx);
            if !c.is_empty() {
                children.push(KNode {
                    comments: c,
                    ..Default::default()
                });
            }
        }
    }

    fn label(&mut self, b: &Block) -> Option<String> {
        match b.labels.as_slice() {
            [l] => Some(l.as_str().to_string()),
            _ => {
                let d = self.err(
                    b.ident.span(),
                    format!("`{}` needs exactly one name", b.ident.as_str()),
                    "one label expected",
                );
                self.push(d);
                None
            }
        }
    }

    /// A nested block where only attributes are expected.
    fn no_blocks(&mut self, b: &Block, allowed: &[&str]) {
        for inner in b.body.blocks() {
            if allowed.contains(&inner.ident.as_str()) {
                continue;
            }
            let d = self.err(
                inner.span(),
                format!(
                    "block `{}` inside `{}` cannot be carried over",
                    inner.ident.as_str(),
                    b.ident.as_str()
                ),
                "not known here",
            );
            self.push(d);
        }
    }

    fn unknown_attr(&mut self, a: &Attribute, what: &str, known: &[&str]) {
        let d = self
            .err(
                a.key.span(),
                format!("unknown {what} attribute `{}`", a.key.as_str()),
                "cannot be carried over",
            )
            .help_opt(suggest(a.key.as_str(), known.iter().copied()));
        self.push(d);
    }

    /// The value of a KDL string that means the same as the expression: a
    /// literal stays text (`${` escaped as `$${`), a template keeps its
    /// interpolations as written, and any other expression becomes
    /// `${ EXPR }` (which takes the expression's type).
    fn string(&mut self, e: &Expression) -> Option<String> {
        match e {
            Expression::String(s) => Some(escape_literal(s.value())),
            Expression::Bool(b) => Some(b.value().to_string()),
            Expression::Number(_) => {
                // bake turns a number into text in go-cty's form (`1.50` →
                // `1.5`, `1e3` → `1000`): a plain integer is that text
                // already, any other number stays an expression.
                let t = self.text(e);
                let canonical = t == "0"
                    || (!t.starts_with('0')
                        && !t.is_empty()
                        && t.bytes().all(|c| c.is_ascii_digit()));
                Some(if canonical { t } else { self.interp(e) })
            }
            Expression::StringTemplate(t) => self.template(t, e.span()),
            Expression::HeredocTemplate(h) => {
                if h.indent().is_some() {
                    let d = self
                        .err(
                            e.span(),
                            "an indented heredoc (`<<-`) cannot be carried over",
                            "here",
                        )
                        .help("write it as `<<EOT` without indentation, or as a quoted string");
                    self.push(d);
                    return None;
                }
                self.template(&h.template, e.span())
            }
            Expression::Parenthesis(p) => match p.inner() {
                Expression::String(_) | Expression::StringTemplate(_) => self.string(p.inner()),
                _ => Some(self.interp(e)),
            },
            _ => Some(self.interp(e)),
        }
    }

    /// `${EXPR}` (spaced when the text starts or ends with a brace, so
    /// `${{…}}` never appears).
    fn interp(&self, e: &Expression) -> String {
        let t = self.text(e);
        if t.starts_with('{') || t.ends_with('}') {
            format!("${{ {t} }}")
        } else {
            format!("${{{t}}}")
        }
    }

    fn template(&mut self, t: &Template, at: Option<Range<usize>>) -> Option<String> {
        let mut out = String::new();
        for el in t.iter() {
            match el {
                Element::Literal(l) => out.push_str(&escape_literal(l.value())),
                Element::Interpolation(i) => {
                    if i.strip.strip_start() || i.strip.strip_end() {
                        let d = self.err(
                            i.span().or(at.clone()),
                            "a whitespace-stripping interpolation `${~ … ~}` cannot be carried over",
                            "here",
                        );
                        self.push(d);
                        return None;
                    }
                    out.push_str(&self.interp(&i.expr));
                }
                Element::Directive(d) => {
                    let diag = self
                        .err(
                            d.span().or(at.clone()),
                            "a template directive (`%{if}`, `%{for}`) cannot be carried over",
                            "here",
                        )
                        .help(
                            "write it as an expression: `${c ? a : b}` or `${join(\"\", [for …])}`",
                        );
                    self.push(diag);
                    return None;
                }
            }
        }
        Some(out)
    }

    /// The values of a list attribute: one KDL argument per element of a
    /// literal list, else the expression as one argument (a list in a list
    /// position expands).
    fn list(&mut self, e: &Expression) -> Option<Vec<String>> {
        match e {
            Expression::Array(a) => {
                let mut out = Vec::new();
                for item in a.iter() {
                    out.push(self.string(item)?);
                }
                Some(out)
            }
            _ => Some(vec![self.string(e)?]),
        }
    }

    fn variable(&mut self, b: &Block) -> Option<KNode> {
        let name = self.label(b)?;
        let mut n = KNode::new("variable").str_arg(name.clone());
        self.no_blocks(b, &["validation"]);
        let mut default: Option<&Expression> = None;
        let mut children = Vec::new();
        // Comments inside the block go above the one-line variable node.
        let mut inner = Vec::new();
        for a in b.body.attributes() {
            let mut tmp = KNode::default();
            self.decorate(&mut tmp, a.decor());
            inner.extend(tmp.comments);
            inner.extend(tmp.trailing);
            if let Some(r) = a.value.span() {
                inner.extend(inner_comments(&self.src[r]));
            }
        }
        n.comments = inner;
        for a in b.body.attributes() {
            match a.key.as_str() {
                "default" => default = Some(&a.value),
                "description" => {
                    let v = self.string(&a.value)?;
                    n = n.prop("description", KVal::Str(v));
                }
                "type" => {
                    let t = self.text(&a.value);
                    let ty = match t.as_str() {
                        "string" => "string",
                        "bool" => "bool",
                        "number" => "int",
                        _ if t.starts_with("list(") || t.starts_with("tuple(") => "list",
                        _ if t.starts_with("map(") || t.starts_with("object(") => "map",
                        _ => {
                            let d = self.err(
                                a.value.span(),
                                format!("variable type `{t}` cannot be carried over"),
                                "mybake types: string, bool, number (int), list, map",
                            );
                            self.push(d);
                            return None;
                        }
                    };
                    n = n.prop("type", KVal::Str(ty.to_string()));
                }
                _ => self.unknown_attr(a, "variable", &["default", "description", "type"]),
            }
        }
        if let Some(e) = default {
            match e {
                Expression::Null(_) => {}
                Expression::Bool(v) => n = n.prop("default", KVal::Bool(*v.value())),
                Expression::Number(num) => match num.value().as_i64() {
                    Some(i) => n = n.prop("default", KVal::Int(i)),
                    None => {
                        let v = self.interp(e);
                        n = n.prop("default", KVal::Str(v));
                    }
                },
                _ => {
                    let v = self.string(e)?;
                    n = n.prop("default", KVal::Str(v));
                }
            }
            // bake types an untyped variable by its default (an environment
            // value `true` is then a bool): say so in the KDL, whose untyped
            // variables are strings.
            if !n.props.iter().any(|(k, _)| k == "type") {
                let ty = match e {
                    Expression::Bool(_) => Some("bool"),
                    Expression::Number(num) if num.value().as_i64().is_some() => Some("int"),
                    Expression::Array(_) => Some("list"),
                    Expression::Object(_) => Some("map"),
                    _ => None,
                };
                if let Some(ty) = ty {
                    n = n.prop("type", KVal::Str(ty.to_string()));
                }
            }
            // Keep `default` first, as written in bake.
            if let Some(p) = n.props.iter().position(|(k, _)| k == "default") {
                let d = n.props.remove(p);
                n.props.insert(0, d);
            }
        }
        for v in b.body.get_blocks("validation") {
            let mut cond = None;
            let mut msg = None;
            for a in v.body.attributes() {
                match a.key.as_str() {
                    "condition" => cond = Some(self.interp(&a.value)),
                    "error_message" => msg = self.string(&a.value),
                    _ => self.unknown_attr(a, "validation", &["condition", "error_message"]),
                }
            }
            let Some(cond) = cond else {
                let d = self.err(v.span(), "`validation` needs a `condition`", "here");
                self.push(d);
                continue;
            };
            let mut c = KNode::new("validation").str_arg(cond);
            if let Some(m) = msg {
                c = c.prop("message", KVal::Str(m));
            }
            self.decorate(&mut c, v.decor());
            children.push(c);
        }
        if !children.is_empty() {
            n.children = Some(children);
        }
        Some(n)
    }

    fn function(&mut self, b: &Block) -> Option<KNode> {
        let name = self.label(b)?;
        self.no_blocks(b, &[]);
        let mut children = Vec::new();
        for a in b.body.attributes() {
            let c = match a.key.as_str() {
                "params" => {
                    let Expression::Array(arr) = &a.value else {
                        let d =
                            self.err(a.value.span(), "`params` must be a list of names", "here");
                        self.push(d);
                        return None;
                    };
                    let mut c = KNode::new("params");
                    for p in arr.iter() {
                        match p {
                            Expression::Variable(v) => c = c.str_arg(v.as_str().to_string()),
                            _ => {
                                let d = self.err(p.span(), "a parameter must be a name", "here");
                                self.push(d);
                                return None;
                            }
                        }
                    }
                    c
                }
                "variadic_params" => match &a.value {
                    Expression::Variable(v) => {
                        KNode::new("variadic-param").str_arg(v.as_str().to_string())
                    }
                    _ => {
                        let d =
                            self.err(a.value.span(), "`variadic_params` must be a name", "here");
                        self.push(d);
                        return None;
                    }
                },
                "result" => KNode::new("result").str_arg(self.string(&a.value)?),
                _ => {
                    self.unknown_attr(a, "function", &["params", "variadic_params", "result"]);
                    continue;
                }
            };
            self.push_child(c, a, &mut children);
        }
        Some(self.block_node("function", name, b, children))
    }

    fn group(&mut self, b: &Block) -> Option<KNode> {
        let name = self.label(b)?;
        self.no_blocks(b, &[]);
        let mut children = Vec::new();
        for a in b.body.attributes() {
            let c = match a.key.as_str() {
                "targets" => {
                    let mut c = KNode::new("targets");
                    for t in self.list(&a.value)? {
                        c = c.str_arg(t);
                    }
                    c
                }
                "description" => KNode::new("description").str_arg(self.string(&a.value)?),
                _ => {
                    self.unknown_attr(a, "group", &["targets", "description"]);
                    continue;
                }
            };
            self.push_child(c, a, &mut children);
        }
        Some(self.block_node("group", name, b, children))
    }

    fn target(&mut self, b: &Block) -> Option<KNode> {
        let label = self.label(b)?;
        self.no_blocks(b, &[]);
        let keys: Vec<&str> = TARGET_ATTRS.iter().map(|(k, _)| *k).collect();
        let mut children = Vec::new();
        let mut name_attr = None;
        let mut has_matrix = false;
        let mut ok = true;
        let mut prev_end = None;
        for a in b.body.attributes() {
            let blank = self.blank_between(prev_end, a.span()) && !children.is_empty();
            prev_end = a.span().map(|r| r.end);
            let key = a.key.as_str();
            let Some((_, node)) = TARGET_ATTRS.iter().find(|(k, _)| *k == key) else {
                let d = self
                    .err(
                        a.key.span(),
                        format!("bake attribute `{key}` is not supported by mybake"),
                        "cannot be carried over",
                    )
                    .help_opt(suggest(key, keys.iter().copied()));
                self.push(d);
                ok = false;
                continue;
            };
            let before = children.len();
            let done = match *node {
                "name" => {
                    name_attr = self.string(&a.value).map(|n| (n, a.span()));
                    name_attr.is_some()
                }
                "matrix" => {
                    has_matrix = true;
                    self.matrix(&a.value).map(|m| children.push(m)).is_some()
                }
                "arg" | "label" => self.key_values(node, &a.value, &mut children),
                "contexts" => {
                    let mut c = KNode::new("contexts");
                    let mut kids = Vec::new();
                    let ok = self.key_values("", &a.value, &mut kids);
                    for k in &mut kids {
                        // `"" "key" "value"` → `key "value"`
                        if let Some(KVal::Str(key)) = k.args.first().cloned() {
                            k.name = key;
                            k.args.remove(0);
                        }
                    }
                    c.children = Some(kids);
                    children.push(c);
                    ok
                }
                "annotation" => self.annotations(&a.value, &mut children),
                "output" | "attest" | "secret" => self.objects(node, &a.value, &mut children),
                "no-cache" | "pull" => match &a.value {
                    Expression::Bool(v) => {
                        children.push(KNode::new(node).arg(KVal::Bool(*v.value())));
                        true
                    }
                    e => match self.string(e) {
                        Some(s) => {
                            children.push(KNode::new(node).str_arg(s));
                            true
                        }
                        None => false,
                    },
                },
                "tags" | "platforms" | "cache-from" | "cache-to" | "ssh" | "no-cache-filter"
                | "inherits" => match &a.value {
                    Expression::Array(arr)
                        if arr.iter().any(|i| matches!(i, Expression::Object(_))) =>
                    {
                        // cache objects: bake's CSV form.
                        let mut c = KNode::new(node);
                        let mut good = true;
                        for item in arr.iter() {
                            let s = match item {
                                Expression::Object(_) => self.object_fields(item).map(|f| {
                                    f.iter()
                                        .map(|(k, v)| {
                                            if v.contains(',') || v.contains('"') {
                                                format!("\"{k}={}\"", v.replace('"', "\"\""))
                                            } else {
                                                format!("{k}={v}")
                                            }
                                        })
                                        .collect::<Vec<_>>()
                                        .join(",")
                                }),
                                _ => self.string(item),
                            };
                            match s {
                                Some(s) => c = c.str_arg(s),
                                None => good = false,
                            }
                        }
                        children.push(c);
                        good
                    }
                    e => match self.list(e) {
                        Some(vals) => {
                            let mut c = KNode::new(node);
                            c.args = vals.into_iter().map(KVal::Str).collect();
                            children.push(c);
                            true
                        }
                        None => false,
                    },
                },
                _ => match self.string(&a.value) {
                    Some(s) => {
                        children.push(KNode::new(node).str_arg(s));
                        true
                    }
                    None => false,
                },
            };
            ok &= done;
            if let Some(first) = children.get_mut(before) {
                let mut tmp = KNode::default();
                self.decorate(&mut tmp, a.decor());
                first.comments = tmp.comments;
                if let Some(r) = a.value.span() {
                    first.comments.extend(inner_comments(&self.src[r]));
                }
                first.blank_before = blank;
                first.trailing = tmp.trailing;
            }
        }
        if !ok {
            return None;
        }
        let name = match (name_attr, has_matrix) {
            (Some((n, _)), true) => {
                self.renames.push((label.clone(), n.clone()));
                n
            }
            (Some((_, at)), false) => {
                let d = self.err(
                    at,
                    "`name` without `matrix` cannot be carried over",
                    "bake uses `name` only to name matrix expansions",
                );
                self.push(d);
                return None;
            }
            (None, true) => {
                let d = self
                    .err(
                        b.ident.span(),
                        format!("matrix target `{label}` has no `name`"),
                        "every expansion would be named the same",
                    )
                    .help("add `name = \"…-${axis}\"` (bake needs it too)");
                self.push(d);
                return None;
            }
            (None, false) => label,
        };
        self.closing_comments(b, &mut children);
        let mut n = KNode::new("target").str_arg(name);
        n.children = Some(children);
        Some(n)
    }

    /// `args = { K = V }` → `arg "K" "V"` nodes (a null value stays as
    /// `${null}`, which leaves the entry out, as bake does).
    fn key_values(&mut self, node: &str, e: &Expression, out: &mut Vec<KNode>) -> bool {
        let Expression::Object(obj) = e else {
            let d = self
                .err(
                    e.span(),
                    format!("only an object literal `{{ KEY = VALUE }}` can be carried over as `{node}`"),
                    "computed here",
                )
                .help("write the entries out, each value may be an expression");
            self.push(d);
            return false;
        };
        let mut ok = true;
        for (k, v) in obj.iter() {
            let key = match k {
                ObjectKey::Ident(i) => Some(i.as_str().to_string()),
                ObjectKey::Expression(Expression::String(s)) => Some(s.value().to_string()),
                ObjectKey::Expression(ke) => {
                    let d = self.err(ke.span(), "a computed key cannot be carried over", "here");
                    self.push(d);
                    None
                }
            };
            let val = self.string(v.expr());
            match (key, val) {
                (Some(k), Some(v)) => out.push(KNode::new(node).str_arg(k).str_arg(v)),
                _ => ok = false,
            }
        }
        ok
    }

    /// `annotations = ["index:k=v"]` → `annotation "index:k" "v"`.
    fn annotations(&mut self, e: &Expression, out: &mut Vec<KNode>) -> bool {
        let Some(items) = self.list_items(e) else {
            return false;
        };
        let mut ok = true;
        for item in items {
            let Some(s) = self.string(item) else {
                ok = false;
                continue;
            };
            let eq = s.find('=');
            let interp = s.find("${");
            match eq {
                Some(i) if interp.is_none_or(|j| i < j) => {
                    out.push(
                        KNode::new("annotation")
                            .str_arg(s[..i].to_string())
                            .str_arg(s[i + 1..].to_string()),
                    );
                }
                _ => {
                    let d = self.err(
                        item.span(),
                        "an annotation whose `KEY=` is computed cannot be carried over",
                        "write `KEY=…` literally",
                    );
                    self.push(d);
                    ok = false;
                }
            }
        }
        ok
    }

    fn list_items<'e>(&mut self, e: &'e Expression) -> Option<Vec<&'e Expression>> {
        match e {
            Expression::Array(a) => Some(a.iter().collect()),
            _ => {
                let d = self
                    .err(
                        e.span(),
                        "only a list literal `[…]` can be carried over here",
                        "computed here",
                    )
                    .help("write the list out; each element may be an expression");
                self.push(d);
                None
            }
        }
    }

    /// An object literal's fields as KDL strings.
    fn object_fields(&mut self, e: &Expression) -> Option<Vec<(String, String)>> {
        let Expression::Object(obj) = e else {
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in obj.iter() {
            let key = match k {
                ObjectKey::Ident(i) => i.as_str().to_string(),
                ObjectKey::Expression(Expression::String(s)) => s.value().to_string(),
                ObjectKey::Expression(ke) => {
                    let d = self.err(ke.span(), "a computed key cannot be carried over", "here");
                    self.push(d);
                    return None;
                }
            };
            out.push((key, self.string(v.expr())?));
        }
        Some(out)
    }

    /// `output`/`attest`/`secret` lists of CSV strings or objects → typed
    /// or property nodes.
    fn objects(&mut self, node: &str, e: &Expression, out: &mut Vec<KNode>) -> bool {
        let Some(items) = self.list_items(e) else {
            return false;
        };
        let mut ok = true;
        for item in items {
            let fields = match item {
                Expression::Object(_) => self.object_fields(item),
                // bake reads an output without `=` as a directory to
                // export to (`type=local,dest=PATH`).
                _ if node == "output" && self.string(item).is_some_and(|s| !s.contains('=')) => {
                    self.string(item).map(|s| {
                        vec![
                            ("type".to_string(), "local".to_string()),
                            ("dest".to_string(), s),
                        ]
                    })
                }
                _ => self.string(item).map(|s| {
                    crate::load::json::split_csv(&s)
                        .into_iter()
                        .filter(|f| !f.is_empty())
                        .map(|f| match f.split_once('=') {
                            Some((k, v)) if !k.contains("${") => {
                                (k.trim().to_string(), v.to_string())
                            }
                            _ => ("type".to_string(), f),
                        })
                        .collect()
                }),
            };
            let Some(mut fields) = fields else {
                ok = false;
                continue;
            };
            let mut n = KNode::new(node);
            if node == "secret" {
                // bake's `type=env|file`: mybake says which by `env=`/`src=`.
                if let Some(p) = fields.iter().position(|(k, _)| k == "type") {
                    let (_, t) = fields.remove(p);
                    let id = fields
                        .iter()
                        .find(|(k, _)| k == "id")
                        .map(|(_, v)| v.clone());
                    match (t.as_str(), id) {
                        ("env", Some(id)) if !fields.iter().any(|(k, _)| k == "env") => {
                            fields.push(("env".to_string(), id))
                        }
                        ("env", _) | ("file", _) => {}
                        _ => {
                            let d = self.err(item.span(), format!("secret type `{t}` cannot be carried over"), "mybake secrets are files (`src=`) or environment variables (`env=`)");
                            self.push(d);
                            ok = false;
                            continue;
                        }
                    }
                }
                for (k, v) in fields {
                    let k = if k == "source" { "src".to_string() } else { k };
                    n = n.prop(&k, KVal::Str(v));
                }
            } else {
                let Some(p) = fields.iter().position(|(k, _)| k == "type") else {
                    let d = self.err(
                        item.span(),
                        format!("`{node}` needs `type=`"),
                        "no type here",
                    );
                    self.push(d);
                    ok = false;
                    continue;
                };
                let (_, t) = fields.remove(p);
                n = n.str_arg(t);
                for (k, v) in fields {
                    n = n.prop(&k, KVal::Str(v));
                }
            }
            out.push(n);
        }
        ok
    }

    /// `matrix = { axis = [...] }` → `matrix { axis "a" "b" }`, object
    /// values as `item` children.
    fn matrix(&mut self, e: &Expression) -> Option<KNode> {
        let Expression::Object(obj) = e else {
            let d = self.err(
                e.span(),
                "only an object literal `{ axis = [...] }` can be carried over as `matrix`",
                "computed here",
            );
            self.push(d);
            return None;
        };
        let mut axes = Vec::new();
        for (k, v) in obj.iter() {
            let name = match k {
                ObjectKey::Ident(i) => i.as_str().to_string(),
                ObjectKey::Expression(Expression::String(s)) => s.value().to_string(),
                ObjectKey::Expression(ke) => {
                    let d = self.err(
                        ke.span(),
                        "a computed axis name cannot be carried over",
                        "here",
                    );
                    self.push(d);
                    return None;
                }
            };
            let mut axis = KNode::new(&name);
            match v.expr() {
                Expression::Array(arr)
                    if arr.iter().any(|i| matches!(i, Expression::Object(_))) =>
                {
                    let mut items = Vec::new();
                    for item in arr.iter() {
                        let Expression::Object(_) = item else {
                            let d = self.err(
                                item.span(),
                                "a matrix axis mixes objects and other values",
                                "not an object",
                            );
                            self.push(d);
                            return None;
                        };
                        let mut it = KNode::new("item");
                        for (fk, fv) in self.object_fields(item)? {
                            it = it.prop(&fk, KVal::Str(fv));
                        }
                        items.push(it);
                    }
                    axis.children = Some(items);
                }
                other => {
                    for s in self.list(other)? {
                        axis = axis.str_arg(s);
                    }
                }
            }
            axes.push(axis);
        }
        let mut m = KNode::new("matrix");
        m.children = Some(axes);
        Some(m)
    }
}

/// A literal HCL string as KDL string content: `${` would start an
/// interpolation, so it is escaped as `$${`.
fn escape_literal(s: &str) -> String {
    s.replace("${", "$${")
}
