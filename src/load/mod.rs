//! Stage 1 — `load`: find the build files, decode each with knuffel, and
//! turn every node into typed declarations that keep their spans.
//!
//! Entry point: [`load`]. Output: [`Loaded`] (declarations per file, in file
//! order) or every problem found in all files.

mod lenient;
mod model;
pub mod target;

use std::path::{Path, PathBuf};

use knuffel::ast::Literal;
use miette::Diagnostic;

use crate::diag::{suggest, Diag, Diagnostics};
use crate::source::{FileId, Sources, Sp, Span};
pub use target::TargetDecl;

pub const DEFAULT_FILE: &str = "mybake.kdl";
pub const OVERRIDE_FILE: &str = "mybake.override.kdl";

/// Where to read from.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Working directory (after `-C`).
    pub cwd: PathBuf,
    /// `-f` files; empty = defaults. `-` reads standard input.
    pub files: Vec<PathBuf>,
}

/// A variable declaration.
#[derive(Debug, Clone)]
pub struct VariableDecl {
    pub name: Sp<String>,
    pub span: Span,
    pub default: Option<Sp<DefaultValue>>,
    pub ty: Option<Sp<String>>,
    pub description: Option<Sp<String>>,
}

/// A default as written: its KDL type matters for typed variables.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultValue {
    Str(String),
    Bool(bool),
    Int(i64),
}

#[derive(Debug, Clone)]
pub struct GroupDecl {
    pub name: Sp<String>,
    pub span: Span,
    /// `None` when this declaration has no `targets` node (merging keeps the
    /// earlier list).
    pub targets: Option<Vec<Sp<String>>>,
    pub description: Option<Sp<String>>,
}

/// Everything declared in one file.
#[derive(Debug, Clone, Default)]
pub struct FileDecls {
    pub file: FileId,
    pub variables: Vec<VariableDecl>,
    pub groups: Vec<GroupDecl>,
    pub targets: Vec<TargetDecl>,
}

/// Output of the load stage.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub cwd: PathBuf,
    pub sources: Sources,
    pub files: Vec<FileDecls>,
}

/// Errors of the load stage.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no {DEFAULT_FILE} in {0}")]
    NoDefaultFile(PathBuf),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
}

impl From<LoadError> for Diag {
    fn from(e: LoadError) -> Diag {
        let code = match e {
            LoadError::NoDefaultFile(_) => "mybake::load::no-file",
            LoadError::Read { .. } => "mybake::load::read",
        };
        let d = Diag::new(code, e.to_string());
        match e {
            LoadError::NoDefaultFile(_) => {
                d.help("create mybake.kdl here, or name a file with -f, or a directory with -C")
            }
            _ => d,
        }
    }
}

/// Read and decode every build file. Problems in all files are collected;
/// the sources are returned either way so diagnostics can be rendered.
pub fn load(opts: &LoadOptions) -> (Sources, Result<Vec<FileDecls>, Diagnostics>) {
    let mut sources = Sources::default();
    let mut diags = Diagnostics::default();
    let paths = match find_files(opts) {
        Ok(p) => p,
        Err(e) => return (sources, Err(Diag::from(e).into())),
    };
    let mut files = Vec::new();
    for (display, path) in paths {
        let text = if display == "-" {
            let mut s = String::new();
            match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
                Ok(_) => Ok(s),
                Err(e) => Err(e),
            }
        } else {
            std::fs::read_to_string(&path)
        };
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                diags.push(LoadError::Read {
                    path: display,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let id = sources.add(display, path, text);
        let text = sources.get(id).map(|f| f.text.clone()).unwrap_or_default();
        let name = sources.get(id).map(|f| f.name.clone()).unwrap_or_default();
        files.push(decode_file(id, &name, &text, &mut diags));
    }
    (sources, diags.into_result(files))
}

/// Decode one file's text. Public for the fuzz target and unit tests.
pub fn decode_file(id: FileId, name: &str, text: &str, diags: &mut Diagnostics) -> FileDecls {
    let mut out = FileDecls {
        file: id,
        ..Default::default()
    };
    if let Some(at) = lenient::unterminated_comment(text) {
        diags.push(
            Diag::new("mybake::load::syntax", "unterminated `/*` comment")
                .label(Span::new(id, at, at + 2), "opened here, never closed")
                .help("close it with `*/`"),
        );
        return out;
    }
    let patched = lenient::terminate_inline_blocks(text);
    let nodes: Vec<model::TopNode> = match knuffel::parse(name, patched.as_deref().unwrap_or(text))
    {
        Ok(n) => n,
        Err(e) => {
            for d in knuffel_diags(id, text, &e) {
                diags.push(d);
            }
            // knuffel gives no partial result; when the syntax is fine,
            // still check target bodies so every problem shows at once.
            if let Ok(doc) =
                knuffel::parse_ast::<knuffel::span::Span>(name, patched.as_deref().unwrap_or(text))
            {
                for node in &doc.nodes {
                    if &**node.node_name != "target" {
                        continue;
                    }
                    let Some(arg) = node.arguments.first() else {
                        continue;
                    };
                    let Literal::String(tn) = &*arg.literal else {
                        continue;
                    };
                    let tname = Sp::new(tn.to_string(), Span::from_knuffel(id, arg.literal.span()));
                    let body = node.children.as_ref().map(|c| c.as_slice()).unwrap_or(&[]);
                    target::decode_body(
                        id,
                        tname,
                        Span::from_knuffel(id, node.span()),
                        body,
                        diags,
                    );
                }
            }
            return out;
        }
    };
    for node in nodes {
        match node {
            model::TopNode::Variable(v) => out.variables.push(variable(id, v, diags)),
            model::TopNode::Group(g) => out.groups.push(group(id, g, diags)),
            model::TopNode::Target(t) => out.targets.push(target::decode(id, t, diags)),
        }
    }
    out
}

fn find_files(opts: &LoadOptions) -> Result<Vec<(String, PathBuf)>, LoadError> {
    if opts.files.is_empty() {
        let main = opts.cwd.join(DEFAULT_FILE);
        if !main.is_file() {
            return Err(LoadError::NoDefaultFile(opts.cwd.clone()));
        }
        let mut v = vec![(DEFAULT_FILE.to_string(), main)];
        let over = opts.cwd.join(OVERRIDE_FILE);
        if over.is_file() {
            v.push((OVERRIDE_FILE.to_string(), over));
        }
        return Ok(v);
    }
    Ok(opts
        .files
        .iter()
        .map(|f| {
            if f.as_os_str() == "-" {
                ("-".to_string(), opts.cwd.join("-"))
            } else {
                (f.display().to_string(), absolute(&opts.cwd, f))
            }
        })
        .collect())
}

/// `base/rel` lexically normalised (no filesystem access).
pub fn absolute(base: &Path, rel: &Path) -> PathBuf {
    let joined = if rel.is_absolute() {
        rel.to_path_buf()
    } else {
        base.join(rel)
    };
    normalize(&joined)
}

/// Remove `.` and resolve `..` lexically.
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn sp(file: FileId, s: &model::KStr) -> Sp<String> {
    Sp::new(s.to_string(), Span::from_knuffel(file, s.span()))
}

fn variable(file: FileId, v: model::VariableNode, diags: &mut Diagnostics) -> VariableDecl {
    let default = v.default.and_then(|val| {
        let span = Span::from_knuffel(file, &val.span);
        let d = match &val.literal {
            Literal::String(s) => Some(DefaultValue::Str(s.to_string())),
            Literal::Bool(b) => Some(DefaultValue::Bool(*b)),
            Literal::Int(i) => match i64::try_from(i) {
                Ok(n) => Some(DefaultValue::Int(n)),
                Err(_) => {
                    diags.push(
                        Diag::new("mybake::load::bad-value", "integer out of range")
                            .label(span, "does not fit in 64 bits"),
                    );
                    None
                }
            },
            other => {
                diags.push(
                    Diag::new(
                        "mybake::load::wrong-type",
                        format!(
                            "a variable default must be a string, boolean or integer, found {}",
                            model::kind_of(other)
                        ),
                    )
                    .label(span, "this value"),
                );
                None
            }
        };
        d.map(|d| Sp::new(d, span))
    });
    VariableDecl {
        name: sp(file, &v.name),
        span: Span::from_knuffel(file, &v.span),
        default,
        ty: v.ty.as_ref().map(|t| sp(file, t)),
        description: v.description.as_ref().map(|t| sp(file, t)),
    }
}

fn group(file: FileId, g: model::GroupNode, diags: &mut Diagnostics) -> GroupDecl {
    let mut out = GroupDecl {
        name: sp(file, &g.name),
        span: Span::from_knuffel(file, &g.span),
        targets: None,
        description: None,
    };
    for item in g.items {
        match item {
            model::GroupItem::Targets(t) => out
                .targets
                .get_or_insert_with(Vec::new)
                .extend(t.iter().map(|s| sp(file, s))),
            model::GroupItem::Description(d) => {
                if let Some(prev) = &out.description {
                    diags.push(duplicate(
                        "description",
                        prev.span,
                        Span::from_knuffel(file, d.span()),
                    ));
                }
                out.description = Some(sp(file, &d));
            }
        }
    }
    out
}

pub(crate) fn duplicate(what: &str, first: Span, again: Span) -> Diag {
    Diag::new(
        "mybake::load::duplicate",
        format!("`{what}` is set twice in the same block"),
    )
    .label(again, "set again here")
    .label(first, "first set here")
    .help("remove one of them (to override a value, use a later file or `--set`)")
}

const TOP_NODES: &[&str] = &["variable", "group", "target"];
const GROUP_NODES: &[&str] = &["targets", "description"];
const VARIABLE_PROPS: &[&str] = &["default", "type", "description"];

/// Turn knuffel's errors (syntax and decode) into our diagnostics, adding
/// did-you-mean suggestions for unknown nodes and properties.
fn knuffel_diags(file: FileId, text: &str, e: &knuffel::Error) -> Vec<Diag> {
    let mut out = Vec::new();
    let Some(related) = e.related() else {
        return out;
    };
    for r in related {
        let message = r.to_string();
        let mut d = Diag::new("mybake::load::syntax", message.clone());
        if let Some(labels) = r.labels() {
            for l in labels {
                let span = Span::new(file, l.offset(), l.offset() + l.len());
                d = d.label(span, l.label().unwrap_or("here").to_string());
            }
        }
        if let Some(h) = r.help() {
            d = d.help(h.to_string());
        }
        // The offending word: quoted in "unexpected node `x`", else the
        // text under the primary label ("expected one of …").
        let word = if message.starts_with("unexpected") {
            backticked(&message)
        } else {
            d.span()
                .and_then(|s| text.get(s.start as usize..s.end as usize))
                .map(str::to_string)
        };
        if let Some(name) = word {
            let candidates: &[&str] = if message.starts_with("unexpected property") {
                VARIABLE_PROPS
            } else if message.contains("unexpected node") || message.starts_with("expected one of")
            {
                if message.contains("variable") || message.contains("target") {
                    TOP_NODES
                } else {
                    GROUP_NODES
                }
            } else {
                &[]
            };
            if message.starts_with("unexpected") || message.starts_with("expected one of") {
                d.code = "mybake::load::unknown";
            }
            d = d.help_opt(suggest(&name, candidates.iter().copied()));
        }
        out.push(d);
    }
    out
}

fn backticked(s: &str) -> Option<String> {
    let a = s.find('`')?;
    let b = s[a + 1..].find('`')?;
    Some(s[a + 1..a + 1 + b].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> (FileDecls, Diagnostics) {
        let mut d = Diagnostics::default();
        let f = decode_file(0, "t.kdl", text, &mut d);
        (f, d)
    }

    #[test]
    fn decodes_top_level_nodes() {
        let (f, d) = decode(
            r#"
variable "TAG" default="dev" description="tag"
variable "N" type="int" default=4
group "default" { targets "a" "b"; description "all" }
target "a" { context "." }
"#,
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(f.variables.len(), 2);
        assert_eq!(
            f.variables[1].default.as_ref().map(|d| d.v.clone()),
            Some(DefaultValue::Int(4))
        );
        assert_eq!(f.groups[0].targets.as_ref().map(|t| t.len()), Some(2));
        assert_eq!(f.targets.len(), 1);
    }

    #[test]
    fn syntax_error_is_located() {
        let (_, d) = decode("target \"a\" {\n  context \"x\n");
        assert!(!d.is_empty());
        assert!(d.items.iter().all(|d| d.span().is_some()));
    }

    #[test]
    fn unknown_top_level_node_suggests() {
        let (_, d) = decode("targte \"a\" {}\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d.items[0].help.as_deref().unwrap_or("").contains("target"),
            "{:?}",
            d.items[0]
        );
    }

    #[test]
    fn unknown_variable_property_suggests() {
        let (_, d) = decode("variable \"A\" defualt=\"x\"\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d.items[0].help.as_deref(), Some("did you mean `default`?"));
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(
            absolute(Path::new("/w"), Path::new("sub/../x.kdl")),
            PathBuf::from("/w/x.kdl")
        );
    }
}
