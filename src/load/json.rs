//! Bake's JSON build files (`-f FILE.json`): `variable`, `group` and
//! `target` objects with bake's attribute names, decoded into the same
//! declarations as a KDL file ([`FileDecls`]), every value keeping the span
//! of its JSON text (so errors show `file:line:col` in the JSON).
//!
//! The key use: docker/metadata-action's bake file (target
//! `docker-metadata-action` with `tags`, `labels`, `annotations`, `args`)
//! next to `mybake.kdl`, inherited by the targets that publish.

use super::target::AxisValue;
use super::{DefaultValue, FileDecls, GroupDecl, TargetDecl, VariableDecl};
use crate::attrs::{self, A};
use crate::diag::{suggest, Diag, Diagnostics};
use crate::source::{FileId, Sp, Span};
use crate::value::{Attrs, Entry, EntryMap, Obj, Value};

/// A JSON value with the byte range of its text.
#[derive(Debug, Clone, PartialEq)]
pub struct JVal {
    pub kind: JKind,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JKind {
    Null,
    Bool(bool),
    /// The number as written.
    Num(String),
    Str(String),
    Arr(Vec<JVal>),
    /// Members in file order: key (with its span) and value.
    Obj(Vec<(String, usize, usize, JVal)>),
}

impl JKind {
    pub fn describe(&self) -> &'static str {
        match self {
            JKind::Null => "null",
            JKind::Bool(_) => "a boolean",
            JKind::Num(_) => "a number",
            JKind::Str(_) => "a string",
            JKind::Arr(_) => "an array",
            JKind::Obj(_) => "an object",
        }
    }
}

/// A syntax error: byte offset and message.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub at: usize,
    pub message: String,
}

/// Deepest nesting accepted (a build file needs a few levels).
const MAX_DEPTH: usize = 128;

/// Parse a whole JSON document.
pub fn parse(text: &str) -> Result<JVal, SyntaxError> {
    let mut p = Parser {
        b: text.as_bytes(),
        s: text,
        i: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i < p.b.len() {
        return Err(p.err("unexpected text after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn err(&self, m: &str) -> SyntaxError {
        SyntaxError {
            at: self.i,
            message: m.to_string(),
        }
    }
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn value(&mut self, depth: usize) -> Result<JVal, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deep"));
        }
        let start = self.i;
        let kind = match self.b.get(self.i) {
            None => return Err(self.err("unexpected end of file, expected a value")),
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        if self.b.get(self.i) != Some(&b'"') {
                            return Err(self.err("expected a key in double quotes"));
                        }
                        let ks = self.i;
                        let k = self.string()?;
                        let ke = self.i;
                        self.ws();
                        if self.b.get(self.i) != Some(&b':') {
                            return Err(self.err("expected `:` after the key"));
                        }
                        self.i += 1;
                        self.ws();
                        let v = self.value(depth + 1)?;
                        members.push((k, ks, ke, v));
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(self.err("expected `,` or `}`")),
                        }
                    }
                }
                JKind::Obj(members)
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(self.err("expected `,` or `]`")),
                        }
                    }
                }
                JKind::Arr(items)
            }
            Some(b'"') => JKind::Str(self.string()?),
            Some(b't') if self.s[self.i..].starts_with("true") => {
                self.i += 4;
                JKind::Bool(true)
            }
            Some(b'f') if self.s[self.i..].starts_with("false") => {
                self.i += 5;
                JKind::Bool(false)
            }
            Some(b'n') if self.s[self.i..].starts_with("null") => {
                self.i += 4;
                JKind::Null
            }
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                if self.b[self.i] == b'-' {
                    self.i += 1;
                }
                let digits = |p: &mut Self| {
                    let s = p.i;
                    while p.i < p.b.len() && p.b[p.i].is_ascii_digit() {
                        p.i += 1;
                    }
                    p.i > s
                };
                let int_start = self.i;
                if !digits(self) {
                    return Err(self.err("expected a digit"));
                }
                if self.b[int_start] == b'0' && self.i - int_start > 1 {
                    self.i = int_start;
                    return Err(self.err("a number cannot start with 0"));
                }
                if self.b.get(self.i) == Some(&b'.') {
                    self.i += 1;
                    if !digits(self) {
                        return Err(self.err("expected a digit after `.`"));
                    }
                }
                if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
                    self.i += 1;
                    if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                        self.i += 1;
                    }
                    if !digits(self) {
                        return Err(self.err("expected a digit in the exponent"));
                    }
                }
                JKind::Num(self.s[start..self.i].to_string())
            }
            Some(_) => {
                return Err(self
                    .err("expected a value (string, number, object, array, true, false or null)"))
            }
        };
        Ok(JVal {
            kind,
            start,
            end: self.i,
        })
    }
    /// A string starting at the opening quote.
    fn string(&mut self) -> Result<String, SyntaxError> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let run = self.i;
            while self.i < self.b.len() && !matches!(self.b[self.i], b'"' | b'\\' | 0..=0x1f) {
                self.i += 1;
            }
            out.push_str(&self.s[run..self.i]);
            match self.b.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = match self.b.get(self.i) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            if (0xd800..0xdc00).contains(&hi) {
                                if !self.s[self.i + 1..].starts_with("\\u") {
                                    return Err(self.err("unpaired surrogate in `\\u` escape"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.err("unpaired surrogate in `\\u` escape"));
                                }
                                char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                                    .ok_or_else(|| self.err("invalid `\\u` escape"))?
                            } else {
                                char::from_u32(hi)
                                    .ok_or_else(|| self.err("invalid `\\u` escape"))?
                            }
                        }
                        _ => return Err(self.err("invalid escape in string")),
                    };
                    self.i += 1;
                    out.push(c);
                }
                Some(_) => return Err(self.err("control character in string (escape it)")),
            }
        }
    }
    /// Four hex digits after `\u` (`self.i` at the `u`; left at the last digit).
    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let h = self
            .s
            .get(self.i + 1..self.i + 5)
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| self.err("`\\u` needs four hex digits"))?;
        self.i += 4;
        Ok(u32::from_str_radix(h, 16).unwrap_or(0))
    }
}

/// Bake's JSON attribute names, mapped to the attribute table (`target` is
/// the stage).
fn attr_of(key: &str) -> Option<A> {
    Some(match key {
        "description" => A::Description,
        "context" => A::Context,
        "contexts" => A::Contexts,
        "dockerfile" => A::Dockerfile,
        "dockerfile-inline" => A::DockerfileInline,
        "args" => A::Arg,
        "annotations" => A::Annotation,
        "attest" => A::Attest,
        "labels" => A::Label,
        "tags" => A::Tags,
        "cache-from" => A::CacheFrom,
        "cache-to" => A::CacheTo,
        "target" => A::Stage,
        "secret" => A::Secret,
        "ssh" => A::Ssh,
        "platforms" => A::Platforms,
        "output" => A::Output,
        "pull" => A::Pull,
        "no-cache" => A::NoCache,
        "network" => A::Network,
        "no-cache-filter" => A::NoCacheFilter,
        _ => return None,
    })
}

/// Every key a JSON target accepts (for did-you-mean).
pub const TARGET_KEYS: &[&str] = &[
    "description",
    "context",
    "contexts",
    "dockerfile",
    "dockerfile-inline",
    "args",
    "annotations",
    "attest",
    "labels",
    "tags",
    "cache-from",
    "cache-to",
    "target",
    "secret",
    "ssh",
    "platforms",
    "output",
    "pull",
    "no-cache",
    "network",
    "no-cache-filter",
    "inherits",
    "matrix",
    "name",
];

/// Bake target keys mybake has no attribute for.
const UNSUPPORTED: &[&str] = &[
    "entitlements",
    "shm-size",
    "ulimits",
    "call",
    "extra-hosts",
    "cgroup-parent",
];

/// Decode one JSON build file.
pub fn decode_file(id: FileId, text: &str, diags: &mut Diagnostics) -> FileDecls {
    let mut out = FileDecls {
        file: id,
        ..Default::default()
    };
    let root = match parse(text) {
        Ok(v) => v,
        Err(e) => {
            let end = text[e.at..]
                .chars()
                .next()
                .map_or(e.at, |c| e.at + c.len_utf8());
            diags.push(
                Diag::new(
                    "mybake::load::syntax",
                    format!("invalid JSON: {}", e.message),
                )
                .label(Span::new(id, e.at, end), "here"),
            );
            return out;
        }
    };
    let d = Dec { id, diags };
    d.root(&root, &mut out);
    out
}

struct Dec<'d> {
    id: FileId,
    diags: &'d mut Diagnostics,
}

impl Dec<'_> {
    fn span(&self, v: &JVal) -> Span {
        Span::new(self.id, v.start, v.end)
    }
    fn wrong(&mut self, what: &str, expected: &str, v: &JVal) {
        let span = self.span(v);
        self.diags.push(
            Diag::new(
                "mybake::load::wrong-type",
                format!("{what}: expected {expected}, found {}", v.kind.describe()),
            )
            .label(span, "this value"),
        );
    }
    fn obj<'v>(&mut self, what: &str, v: &'v JVal) -> &'v [(String, usize, usize, JVal)] {
        match &v.kind {
            JKind::Obj(m) => m,
            _ => {
                self.wrong(what, "an object", v);
                &[]
            }
        }
    }
    fn str(&mut self, what: &str, v: &JVal) -> Option<Sp<String>> {
        match &v.kind {
            JKind::Str(s) => Some(Sp::new(s.clone(), self.span(v))),
            _ => {
                self.wrong(what, "a string", v);
                None
            }
        }
    }
    /// A string, or a number/boolean written as its text (bake accepts
    /// these for args and labels).
    fn scalar(&mut self, what: &str, v: &JVal) -> Option<Sp<String>> {
        match &v.kind {
            JKind::Str(s) => Some(Sp::new(s.clone(), self.span(v))),
            JKind::Num(n) => Some(Sp::new(n.clone(), self.span(v))),
            JKind::Bool(b) => Some(Sp::new(b.to_string(), self.span(v))),
            _ => {
                self.wrong(what, "a string", v);
                None
            }
        }
    }
    /// An array of strings (a lone string is taken as a one-element list,
    /// as bake does).
    fn strings(&mut self, what: &str, v: &JVal) -> Vec<Sp<String>> {
        match &v.kind {
            JKind::Arr(items) => items
                .iter()
                .filter_map(|i| self.str(&format!("{what} entry"), i))
                .collect(),
            JKind::Str(_) => self.str(what, v).into_iter().collect(),
            JKind::Null => Vec::new(),
            _ => {
                self.wrong(what, "an array of strings", v);
                Vec::new()
            }
        }
    }
    fn key_span(&self, ks: usize, ke: usize) -> Span {
        Span::new(self.id, ks, ke)
    }
    fn unknown(&mut self, what: &str, key: &str, ks: usize, ke: usize, known: &[&str]) {
        let span = self.key_span(ks, ke);
        self.diags.push(
            Diag::new("mybake::load::unknown", format!("unknown {what} `{key}`"))
                .label(span, "not known here")
                .help_opt(suggest(key, known.iter().copied())),
        );
    }

    fn root(mut self, root: &JVal, out: &mut FileDecls) {
        let mut renames: Vec<(String, String)> = Vec::new();
        for (key, ks, ke, v) in self.obj("a bake JSON file", root) {
            match key.as_str() {
                "variable" => {
                    for (name, ns, ne, body) in self.obj("`variable`", v) {
                        let var = self.variable(name, *ns, *ne, body);
                        out.variables.push(var);
                    }
                }
                "group" => {
                    for (name, ns, ne, body) in self.obj("`group`", v) {
                        let g = self.group(name, *ns, *ne, body);
                        out.groups.push(g);
                    }
                }
                "target" => {
                    for (name, ns, ne, body) in self.obj("`target`", v) {
                        let t = self.target(name, *ns, *ne, body);
                        if t.name.v != *name {
                            renames.push((name.clone(), t.name.v.clone()));
                        }
                        out.targets.push(t);
                    }
                }
                "function" => {
                    let span = self.key_span(*ks, *ke);
                    self.diags.push(
                        Diag::new(
                            "mybake::load::unsupported",
                            "`function` blocks are not read from JSON files",
                        )
                        .label(span, "here")
                        .help("declare the function in a mybake.kdl file"),
                    );
                }
                _ => self.unknown(
                    "top-level key",
                    key,
                    *ks,
                    *ke,
                    &["variable", "group", "target"],
                ),
            }
        }
        // A group naming a matrix target by its bake name means all of its
        // expansions: the target's name template.
        for g in &mut out.groups {
            for t in g.targets.iter_mut().flatten() {
                if let Some((_, to)) = renames.iter().find(|(from, _)| *from == t.v) {
                    t.v = to.clone();
                }
            }
        }
    }

    fn variable(&mut self, name: &str, ns: usize, ne: usize, body: &JVal) -> VariableDecl {
        let mut out = VariableDecl {
            name: Sp::new(name.to_string(), self.key_span(ns, ne)),
            span: self.span(body),
            default: None,
            ty: None,
            description: None,
            validations: Vec::new(),
        };
        for (key, ks, ke, v) in self.obj("a variable", body) {
            match key.as_str() {
                "default" => {
                    let span = self.span(v);
                    out.default = match &v.kind {
                        JKind::Null => None,
                        JKind::Str(s) => Some(Sp::new(DefaultValue::Str(s.clone()), span)),
                        JKind::Bool(b) => Some(Sp::new(DefaultValue::Bool(*b), span)),
                        JKind::Num(n) => match n.parse::<i64>() {
                            Ok(i) => Some(Sp::new(DefaultValue::Int(i), span)),
                            Err(_) => {
                                self.wrong("a variable default", "an integer", v);
                                None
                            }
                        },
                        _ => {
                            self.wrong(
                                "a variable default",
                                "a string, boolean, integer or null",
                                v,
                            );
                            None
                        }
                    }
                }
                "description" => out.description = self.str("`description`", v),
                "type" => out.ty = self.str("`type`", v),
                _ => self.unknown(
                    "variable key",
                    key,
                    *ks,
                    *ke,
                    &["default", "description", "type"],
                ),
            }
        }
        out
    }

    fn group(&mut self, name: &str, ns: usize, ne: usize, body: &JVal) -> GroupDecl {
        let mut out = GroupDecl {
            name: Sp::new(name.to_string(), self.key_span(ns, ne)),
            span: self.span(body),
            targets: None,
            description: None,
        };
        for (key, ks, ke, v) in self.obj("a group", body) {
            match key.as_str() {
                "targets" => out.targets = Some(self.strings("`targets`", v)),
                "description" => out.description = self.str("`description`", v),
                _ => self.unknown("group key", key, *ks, *ke, &["targets", "description"]),
            }
        }
        out
    }

    fn target(&mut self, name: &str, ns: usize, ne: usize, body: &JVal) -> TargetDecl {
        let mut out = TargetDecl {
            file: self.id,
            name: Sp::new(name.to_string(), self.key_span(ns, ne)),
            span: self.span(body),
            inherits: None,
            matrix: None,
            attrs: Attrs::new(),
        };
        let mut name_attr = None;
        for (key, ks, ke, v) in self.obj("a target", body) {
            let key_span = self.key_span(*ks, *ke);
            if key == "inherits" {
                out.inherits = Some(self.strings("`inherits`", v));
                continue;
            }
            if key == "matrix" {
                let mut axes = Vec::new();
                for (axis, as_, ae, vals) in self.obj("`matrix`", v) {
                    let values = match &vals.kind {
                        JKind::Arr(items) => items
                            .iter()
                            .filter_map(|i| match &i.kind {
                                JKind::Str(s) => {
                                    Some(AxisValue::Str(Sp::new(s.clone(), self.span(i))))
                                }
                                JKind::Obj(members) => {
                                    // An object value: read as `${axis.field}`.
                                    let fields = members
                                        .iter()
                                        .filter_map(|(k, _, _, fv)| {
                                            self.scalar("a matrix object field", fv)
                                                .map(|v| (k.clone(), v))
                                        })
                                        .collect();
                                    Some(AxisValue::Item(Sp::new(fields, self.span(i))))
                                }
                                _ => self.str("a matrix value", i).map(AxisValue::Str),
                            })
                            .collect(),
                        _ => {
                            self.wrong("a matrix axis", "an array", vals);
                            Vec::new()
                        }
                    };
                    axes.push((Sp::new(axis.clone(), self.key_span(*as_, *ae)), values));
                }
                out.matrix = Some(Sp::new(axes, key_span));
                continue;
            }
            if key == "name" {
                name_attr = self.str("`name`", v);
                continue;
            }
            if UNSUPPORTED.contains(&key.as_str()) {
                self.diags.push(
                    Diag::new(
                        "mybake::load::unsupported",
                        format!("bake attribute `{key}` is not supported by mybake"),
                    )
                    .label(key_span, "not supported"),
                );
                continue;
            }
            let Some(a) = attr_of(key) else {
                self.unknown("target attribute", key, *ks, *ke, TARGET_KEYS);
                continue;
            };
            if matches!(v.kind, JKind::Null) {
                continue;
            }
            let what = format!("`{key}`");
            let value = match a.def().shape {
                attrs::Shape::Str => self.str(&what, v).map(Value::Str),
                attrs::Shape::Bool => match &v.kind {
                    JKind::Bool(b) => Some(Value::Str(Sp::new(b.to_string(), self.span(v)))),
                    JKind::Str(s) => Some(Value::Str(Sp::new(s.clone(), self.span(v)))),
                    _ => {
                        self.wrong(&what, "a boolean", v);
                        None
                    }
                },
                attrs::Shape::List | attrs::Shape::CsvList => match (&v.kind, a) {
                    // cache-from/cache-to objects: the CSV form bake prints.
                    (JKind::Arr(items), A::CacheFrom | A::CacheTo) => Some(Value::List(
                        items
                            .iter()
                            .filter_map(|i| match &i.kind {
                                JKind::Obj(_) => self
                                    .fields(&what, i)
                                    .map(|f| Sp::new(csv_join(&f), self.span(i))),
                                _ => self.str(&what, i),
                            })
                            .collect(),
                    )),
                    _ => Some(Value::List(self.strings(&what, v))),
                },
                attrs::Shape::KeyValue if a == A::Annotation => {
                    let mut m = EntryMap::new();
                    for s in self.strings(&what, v) {
                        match s.v.split_once('=') {
                            Some((k, val)) => {
                                let value = Sp::new(val.to_string(), s.span);
                                m.insert(
                                    k.to_string(),
                                    Entry {
                                        key_span: s.span,
                                        value,
                                    },
                                );
                            }
                            None => self.diags.push(
                                Diag::new(
                                    "mybake::load::bad-value",
                                    "an annotation must be `[index:|manifest:]KEY=VALUE`",
                                )
                                .label(s.span, "no `=` in this annotation"),
                            ),
                        }
                    }
                    Some(Value::Map(m))
                }
                attrs::Shape::KeyValue | attrs::Shape::ChildMap => {
                    let mut m = EntryMap::new();
                    for (k, ks, ke, val) in self.obj(&what, v) {
                        // A null entry is left out, as bake does.
                        if matches!(val.kind, JKind::Null) {
                            continue;
                        }
                        if let Some(value) = self.scalar(&format!("{what} `{k}`"), val) {
                            m.insert(
                                k.clone(),
                                Entry {
                                    key_span: self.key_span(*ks, *ke),
                                    value,
                                },
                            );
                        }
                    }
                    Some(Value::Map(m))
                }
                attrs::Shape::Typed | attrs::Shape::Props => {
                    let items: Vec<&JVal> = match &v.kind {
                        JKind::Arr(items) => items.iter().collect(),
                        _ => vec![v],
                    };
                    let mut objs = Vec::new();
                    for i in items {
                        let fields = match &i.kind {
                            // bake reads an output without `=` as a
                            // directory (`type=local,dest=PATH`).
                            JKind::Str(s) if a == A::Output && !s.contains('=') => Some(vec![
                                (
                                    "type".to_string(),
                                    Sp::new("local".to_string(), self.span(i)),
                                ),
                                ("dest".to_string(), Sp::new(s.clone(), self.span(i))),
                            ]),
                            JKind::Str(s) => Some(csv_fields(s, self.span(i))),
                            JKind::Obj(_) => self.fields(&what, i),
                            _ => {
                                self.wrong(&what, "a string or an object", i);
                                None
                            }
                        };
                        let Some(mut fields) = fields else { continue };
                        if a.def().shape == attrs::Shape::Typed {
                            match fields.iter().position(|(k, _)| k == "type") {
                                Some(p) => {
                                    let t = fields.remove(p);
                                    fields.insert(0, t);
                                }
                                None => {
                                    let span = self.span(i);
                                    self.diags.push(
                                        Diag::new(
                                            "mybake::load::missing-property",
                                            format!("{what} needs `type=`"),
                                        )
                                        .label(span, "no type"),
                                    );
                                    continue;
                                }
                            }
                        }
                        if a == A::Secret {
                            // bake's `type=env|file`: mybake says which by
                            // `env=` / `src=` (`type=env` without `env=`
                            // reads the variable named like the id).
                            if let Some(p) = fields.iter().position(|(k, _)| k == "type") {
                                let (_, t) = fields.remove(p);
                                let id = fields
                                    .iter()
                                    .find(|(k, _)| k == "id")
                                    .map(|(_, v)| v.clone());
                                match (t.v.as_str(), id) {
                                    ("env", Some(id))
                                        if !fields.iter().any(|(k, _)| k == "env") =>
                                    {
                                        fields.push(("env".to_string(), id))
                                    }
                                    ("env" | "file", _) => {}
                                    _ => {
                                        self.diags.push(
                                            Diag::new(
                                                "mybake::load::bad-value",
                                                format!("secret type `{}` is not supported", t.v),
                                            )
                                            .label(t.span, "`env` or `file`"),
                                        );
                                        continue;
                                    }
                                }
                            }
                        }
                        if let Some(allowed) = a.def().props {
                            for (k, _) in &fields {
                                if !allowed.contains(&k.as_str()) {
                                    let span = self.span(i);
                                    self.diags.push(
                                        Diag::new(
                                            "mybake::load::unknown",
                                            format!("{what} has no property `{k}`"),
                                        )
                                        .label(span, "in this value")
                                        .help(format!("known properties: {}", allowed.join(", "))),
                                    );
                                }
                            }
                        }
                        let req = a.def().required;
                        if !req.is_empty()
                            && !req.iter().any(|r| fields.iter().any(|(k, _)| k == r))
                        {
                            let span = self.span(i);
                            self.diags.push(
                                Diag::new(
                                    "mybake::load::missing-property",
                                    format!("{what} needs `{}=`", req.join("=` or `")),
                                )
                                .label(span, "missing property"),
                            );
                            continue;
                        }
                        objs.push(Obj {
                            span: self.span(i),
                            fields,
                        });
                    }
                    Some(Value::Objects(objs))
                }
            };
            if let Some(value) = value {
                out.attrs.set(a.index(), value);
            }
        }
        // bake names a matrix target's expansions with `name`; in mybake
        // the target's own name is the template.
        match (name_attr, &out.matrix) {
            (Some(n), Some(_)) => out.name = n,
            (Some(n), None) => self.diags.push(
                Diag::new(
                    "mybake::load::unsupported",
                    "`name` is only read on a target with `matrix`",
                )
                .label(n.span, "bake uses `name` to name matrix expansions"),
            ),
            (None, _) => {}
        }
        out
    }

    /// An object of scalar fields (`{"type": "registry"}`).
    fn fields(&mut self, what: &str, v: &JVal) -> Option<Vec<(String, Sp<String>)>> {
        let mut out = Vec::new();
        for (k, _, _, val) in self.obj(what, v) {
            out.push((k.clone(), self.scalar(&format!("{what} `{k}`"), val)?));
        }
        Some(out)
    }
}

/// `type=registry,ref=x` → fields (values keep the whole string's span). A
/// field written with double quotes (CSV) loses them.
pub fn csv_fields(s: &str, span: Span) -> Vec<(String, Sp<String>)> {
    split_csv(s)
        .into_iter()
        .filter(|f| !f.is_empty())
        .map(|f| match f.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), Sp::new(v.to_string(), span)),
            None => ("type".to_string(), Sp::new(f, span)),
        })
        .collect()
}

/// Split on commas outside double quotes and outside `${ }`.
pub fn split_csv(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut depth) = (false, 0usize);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if depth == 0 => quoted = !quoted,
            '$' if chars.peek() == Some(&'{') => {
                cur.push('$');
                cur.push('{');
                chars.next();
                depth += 1;
            }
            '{' if depth > 0 => {
                depth += 1;
                cur.push(c);
            }
            '}' if depth > 0 => {
                depth -= 1;
                cur.push(c);
            }
            ',' if !quoted && depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Fields back to bake's CSV form (quoted when a value holds a comma or a
/// quote).
pub fn csv_join(fields: &[(String, Sp<String>)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            if v.v.contains(',') || v.v.contains('"') {
                format!("\"{k}={}\"", v.v.replace('"', "\"\""))
            } else {
                format!("{k}={}", v.v)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> (FileDecls, Diagnostics) {
        let mut d = Diagnostics::default();
        let f = decode_file(0, text, &mut d);
        (f, d)
    }

    #[test]
    fn parses_json_with_spans() {
        let v = parse(r#" {"a": [1, "x\u00e9\ud83d\ude00", true, null]} "#).unwrap();
        let JKind::Obj(m) = &v.kind else { panic!() };
        assert_eq!((v.start, v.end), (1, 46));
        let JKind::Arr(items) = &m[0].3.kind else {
            panic!()
        };
        assert_eq!(items[1].kind, JKind::Str("xé😀".into()));
        assert_eq!(items[2].kind, JKind::Bool(true));
        for bad in [
            "{",
            "[1,]",
            "{\"a\" 1}",
            "\"\\x\"",
            "01x",
            "{} x",
            "\"a\nb\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// The parser accepts exactly the texts serde_json accepts (on
        /// short texts over JSON's alphabet), with the same values.
        #[test]
        fn agrees_with_serde_json(text in "[\\[\\]{}\",:0-9a-z\\\\ .eE+-]{0,24}") {
            let ours = parse(&text);
            let theirs = serde_json::from_str::<serde_json::Value>(&text);
            proptest::prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?}: {:?}", text, ours);
            if let (Ok(a), Ok(b)) = (ours, theirs) {
                proptest::prop_assert_eq!(to_serde(&a), b);
            }
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i64>().prop_map(Into::into),
            "\\PC{0,8}".prop_map(Into::into),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-z\"\\\\]{0,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Any JSON value serde_json writes (compact or pretty) parses back
        /// to the same value.
        #[test]
        fn reads_what_serde_json_writes(v in json_value(), pretty in proptest::bool::ANY) {
            let text = if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                serde_json::to_string(&v).unwrap()
            };
            let ours = parse(&text).map_err(|e| format!("{e:?}"));
            proptest::prop_assert_eq!(ours.map(|a| to_serde(&a)), Ok(v));
        }
    }

    fn to_serde(v: &JVal) -> serde_json::Value {
        match &v.kind {
            JKind::Null => serde_json::Value::Null,
            JKind::Bool(b) => (*b).into(),
            JKind::Num(n) => serde_json::from_str(n).unwrap(),
            JKind::Str(s) => s.clone().into(),
            JKind::Arr(a) => a.iter().map(to_serde).collect(),
            JKind::Obj(m) => m
                .iter()
                .map(|(k, _, _, v)| (k.clone(), to_serde(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    #[test]
    fn decodes_metadata_action_file() {
        let (f, d) = decode(
            r#"{
  "target": {
    "docker-metadata-action": {
      "tags": ["r/app:main", "r/app:sha-860c190"],
      "labels": {"org.opencontainers.image.version": "main"},
      "annotations": ["manifest:org.opencontainers.image.version=main"],
      "args": {"DOCKER_META_IMAGES": "r/app", "DOCKER_META_VERSION": "main", "N": null}
    }
  }
}"#,
        );
        assert!(d.is_empty(), "{d:?}");
        let t = &f.targets[0];
        assert_eq!(t.name.v, "docker-metadata-action");
        let ann = t
            .attrs
            .get(A::Annotation.index())
            .unwrap()
            .as_map()
            .unwrap();
        assert_eq!(
            ann.get("manifest:org.opencontainers.image.version")
                .unwrap()
                .value
                .v,
            "main"
        );
        let args = t.attrs.get(A::Arg.index()).unwrap().as_map().unwrap();
        assert_eq!(args.len(), 2);
        assert_eq!(
            t.attrs
                .get(A::Tags.index())
                .unwrap()
                .as_list()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn decodes_objects_and_strings() {
        let (f, d) = decode(
            r#"{"variable": {"TAG": {"default": "dev"}, "N": {}},
 "group": {"default": {"targets": ["a"]}},
 "target": {"a": {"target": "rel", "output": ["type=local,dest=out"], "secret": [{"id": "t", "env": "T"}, "type=env,id=U"],
   "cache-to": [{"type": "inline"}], "no-cache": true, "matrix": {"v": ["1", "2"]}}}}"#,
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(f.variables.len(), 2);
        assert!(f.variables[1].default.is_none());
        let t = &f.targets[0];
        let out = &t
            .attrs
            .get(A::Output.index())
            .unwrap()
            .as_objects()
            .unwrap()[0];
        assert_eq!(out.get("type").unwrap().v, "local");
        assert_eq!(out.get("dest").unwrap().v, "out");
        assert_eq!(
            t.attrs.get(A::CacheTo.index()).unwrap().as_list().unwrap()[0].v,
            "type=inline"
        );
        assert_eq!(
            t.attrs.get(A::Stage.index()).unwrap().as_str().unwrap().v,
            "rel"
        );
        let s = &t
            .attrs
            .get(A::Secret.index())
            .unwrap()
            .as_objects()
            .unwrap()[1];
        assert_eq!(s.get("env").unwrap().v, "U");
        assert!(s.get("type").is_none());
    }

    #[test]
    fn matrix_name_becomes_the_target_name() {
        let (f, d) = decode(
            r#"{"group": {"default": {"targets": ["svc"]}},
 "target": {"svc": {"name": "svc-${v}", "matrix": {"v": ["a", "b"]}}, "x": {"name": "y"}}}"#,
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(f.targets[0].name.v, "svc-${v}");
        assert_eq!(f.groups[0].targets.as_ref().unwrap()[0].v, "svc-${v}");
    }

    #[test]
    fn reports_every_error_located() {
        let text =
            r#"{"target": {"a": {"platfroms": ["x"], "tags": 3, "shm-size": "1g"}}, "targte": {}}"#;
        let (_, d) = decode(text);
        assert_eq!(d.len(), 4, "{d:?}");
        assert_eq!(
            d.items[0].help.as_deref(),
            Some("did you mean `platforms`?")
        );
        let s = d.items[1].span().unwrap();
        assert_eq!(&text[s.start as usize..s.end as usize], "3");
        let (_, d) = decode("{\"target\": {\n  \"a\": {,}}}");
        assert_eq!(d.len(), 1);
        assert_eq!(d.items[0].span().unwrap().start, 21);
    }
}
