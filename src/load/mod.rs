//! Stage 1 — `load`: find the build files, decode each with knuffel, and
//! turn every node into typed declarations that keep their spans.
//!
//! Entry point: [`load`]. Output: [`Loaded`] (declarations per file, in file
//! order) or every problem found in all files.

pub mod json;
pub mod kdl;
mod lenient;
mod model;
pub mod target;

use std::path::{Path, PathBuf};

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
    /// `validation "${EXPR}" message="…"` children.
    pub validations: Vec<ValidationDecl>,
}

/// A variable's `validation "${EXPR}" message="…"`.
#[derive(Debug, Clone)]
pub struct ValidationDecl {
    pub condition: Sp<String>,
    pub message: Option<Sp<String>>,
}

/// `function "NAME" { params …; variadic-param …; result "…" }`.
#[derive(Debug, Clone)]
pub struct FunctionDecl {
    pub name: Sp<String>,
    pub span: Span,
    pub params: Vec<Sp<String>>,
    pub variadic: Option<Sp<String>>,
    pub result: Option<Sp<String>>,
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
    pub functions: Vec<FunctionDecl>,
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
        if is_hcl(&path) {
            diags.push(hcl_refused(&display));
            continue;
        }
        let bytes = if display == "-" {
            let mut b = Vec::new();
            match std::io::Read::read_to_end(&mut std::io::stdin(), &mut b) {
                Ok(_) => Ok(b),
                Err(e) => Err(e),
            }
        } else {
            std::fs::read(&path)
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                diags.push(LoadError::Read {
                    path: display,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let (text, d) = not_utf8(sources.len() as FileId, e.into_bytes());
                sources.add(display, path, text);
                diags.push(d);
                continue;
            }
        };
        let json = is_json(&path);
        let id = sources.add(display, path, text);
        let text = sources.get(id).map(|f| f.text.clone()).unwrap_or_default();
        let name = sources.get(id).map(|f| f.name.clone()).unwrap_or_default();
        if json {
            files.push(json::decode_file(id, &text, &mut diags));
        } else {
            files.push(decode_file(id, &name, &text, &mut diags));
        }
    }
    (sources, diags.into_result(files))
}

/// Whether a `-f` file is read as bake JSON (by its extension).
pub fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Whether a `-f` file is an HCL bake file (refused: `mybake convert`).
pub fn is_hcl(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("hcl"))
}

fn hcl_refused(display: &str) -> Diag {
    Diag::new(
        "mybake::load::hcl",
        format!("{display} is an HCL bake file, which mybake does not read"),
    )
    .help(format!(
        "convert it once with `mybake convert {display} -o mybake.kdl`, then use the KDL file"
    ))
}

/// Decode one file's text. Public for the fuzz target and unit tests.
///
/// The fast path parses with the hand-written parser ([`kdl`]) and decodes
/// its tree. When that parser rejects the text, or a top-level node is not
/// in the plain shape the fast decoder handles, the file goes through
/// knuffel ([`decode_file_knuffel`]), which gives the same result for valid
/// files and the exact syntax and decode diagnostics for the rest.
pub fn decode_file(id: FileId, name: &str, text: &str, diags: &mut Diagnostics) -> FileDecls {
    let Some(scan) = lenient_text(id, text, diags) else {
        return FileDecls {
            file: id,
            ..Default::default()
        };
    };
    let src = scan.as_deref().unwrap_or(text);
    let parts = crate::par::parts().min(src.len() / PART_MIN_BYTES);
    match decode_fast(id, src, parts) {
        Some((decls, found)) => {
            diags.extend(found);
            decls
        }
        None => decode_knuffel_guarded(id, name, text, src, diags),
    }
}

/// Largest file knuffel is asked about (when the fast path cannot decode
/// it): 256 KiB. knuffel parses about 1 MB/s in a release build (1.55 s for
/// a 1 MB file of targets with a syntax error at the end; 2.4 s for a 1 MB
/// line of 250,000 arguments); larger files that are not plain KDL get the
/// hand-written parser's syntax error instead (located, without knuffel's
/// wording or decode diagnostics).
const KNUFFEL_MAX_BYTES: usize = 256 << 10;

/// Most KDL nodes, arguments and properties (at every depth) one file may
/// have: 500,000, several times the 5,000-service benchmark monorepo. Past
/// it the parser stops, before the tree and the declarations of millions of
/// nodes take gigabytes.
pub const MAX_NODES: usize = 500_000;

fn too_many_nodes(id: FileId, at: usize) -> Diag {
    Diag::new(
        "mybake::load::too-large",
        format!("the file has more than {MAX_NODES} KDL nodes and values"),
    )
    .label(Span::new(id, at, at), "the limit is passed about here")
    .help("split the configuration, or generate fewer targets (a matrix expands in one node)")
}

/// Stack for knuffel's thread: its parser recurses once per `{` block and
/// per nested `/*` comment (about 13 KiB a level in a debug build, 4 KiB in
/// release; this allows twice that), plus a fixed part.
const KNUFFEL_STACK_BASE: usize = 8 << 20;
const KNUFFEL_STACK_PER_LEVEL: usize = if cfg!(debug_assertions) {
    32 << 10
} else {
    16 << 10
};
/// More stack than this is not asked for: such a file gets the hand-written
/// parser's syntax error.
const KNUFFEL_STACK_MAX: usize = 1 << 30;

/// [`decode_patched_knuffel`] on a thread whose stack fits the text. The
/// nesting depth knuffel can reach is at most the number of `{` plus the
/// number of `/*` in the text, whatever the text means (the lenient scan
/// already refused files nested deeper than [`lenient::MAX_NESTING`]; this
/// does not depend on the scan reading strings and comments as knuffel
/// does). Files too large or too deep for that get one syntax error at
/// the point where the hand-written parser stops.
fn decode_knuffel_guarded(
    id: FileId,
    name: &str,
    text: &str,
    src: &str,
    diags: &mut Diagnostics,
) -> FileDecls {
    let b = src.as_bytes();
    let levels =
        b.iter().filter(|&&c| c == b'{').count() + b.windows(2).filter(|w| w == b"/*").count();
    let stack = levels
        .checked_mul(KNUFFEL_STACK_PER_LEVEL)
        .and_then(|s| s.checked_add(KNUFFEL_STACK_BASE))
        .filter(|&s| s <= KNUFFEL_STACK_MAX);
    match stack {
        Some(stack) if src.len() <= KNUFFEL_MAX_BYTES => {
            let (decls, found) = crate::par::with_stack(stack, || {
                let mut found = Diagnostics::default();
                let decls = decode_patched_knuffel(id, name, text, src, &mut found);
                (decls, found)
            });
            diags.extend(found);
            decls
        }
        _ => {
            let count = std::sync::atomic::AtomicUsize::new(0);
            let at = match kdl::parse_part_capped(src, 0, src.len(), Some((&count, MAX_NODES))) {
                Err(kdl::Stop::TooMany(at)) => {
                    diags.push(too_many_nodes(id, at));
                    return FileDecls {
                        file: id,
                        ..Default::default()
                    };
                }
                Err(kdl::Stop::Rejected(at)) => at,
                Ok(_) => 0,
            };
            let end = text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
            let found = match text[at..].chars().next() {
                Some(c) => format!("found `{}`", c.escape_debug()),
                None => "found end of file".to_string(),
            };
            diags.push(
                Diag::new(
                    "mybake::load::syntax",
                    format!("invalid KDL or an unsupported form: {found}"),
                )
                .label(
                    Span::new(id, at, end),
                    "the file cannot be read from here on",
                )
                .help(format!(
                    "this file is too large ({} bytes) or has too many blocks ({levels}) \
                     for a detailed syntax error",
                    src.len()
                )),
            );
            FileDecls {
                file: id,
                ..Default::default()
            }
        }
    }
}

/// The lenient pre-scan both decoders start with: `None` (with the
/// diagnostic pushed) for an unclosed `/*`, else the patched text if the
/// scan changed anything (one-line blocks).
fn lenient_text(id: FileId, text: &str, diags: &mut Diagnostics) -> Option<Option<String>> {
    let scan = lenient::scan(text);
    if let Some(at) = scan.too_deep {
        diags.push(too_deep(id, text, at));
        return None;
    }
    if let Some(at) = scan.open_comment {
        diags.push(unterminated_comment(id, at));
        return None;
    }
    Some(scan.patched)
}

/// Below this size a file is parsed in one part: a thread would cost more
/// than it saves.
const PART_MIN_BYTES: usize = 64 * 1024;

/// The fast path of [`decode_file`]: the hand-written parser and
/// [`decode_doc`], or `None` when the text needs knuffel. With `parts` > 1
/// the text is cut into that many parts ([`kdl::cut_points`]), parsed and
/// decoded at once, each with its own diagnostics, and put together in
/// order (so the result is the one-part result); if a cut is not a node
/// boundary, the text is parsed whole.
fn decode_fast(id: FileId, src: &str, parts: usize) -> Option<(FileDecls, Diagnostics)> {
    enum Part {
        Decoded(FileDecls, Diagnostics),
        /// Needs knuffel.
        NotPlain,
        /// Rejected, or the cut is not a node boundary.
        Unparsed,
    }
    let decode = |doc: &kdl::Document| {
        if !top_level_is_plain(doc) {
            return Part::NotPlain;
        }
        let mut diags = Diagnostics::default();
        let decls = decode_doc(id, doc, &mut diags);
        Part::Decoded(decls, diags)
    };
    let cuts = kdl::cut_points(src, parts);
    let bounds: Vec<(usize, usize)> = std::iter::once(0)
        .chain(cuts.iter().copied())
        .zip(cuts.iter().copied().chain([src.len()]))
        .collect();
    let count = std::sync::atomic::AtomicUsize::new(0);
    let too_many = std::sync::Mutex::new(None::<usize>);
    let parse = |start: usize, end: usize| match kdl::parse_part_capped(
        src,
        start,
        end,
        Some((&count, MAX_NODES)),
    ) {
        Ok(doc) => decode(&doc),
        Err(kdl::Stop::Rejected(_)) => Part::Unparsed,
        Err(kdl::Stop::TooMany(at)) => {
            let mut t = too_many.lock().unwrap_or_else(|e| e.into_inner());
            *t = Some(t.map_or(at, |t| t.min(at)));
            Part::Unparsed
        }
    };
    let mut parts = crate::par::map(bounds, |(start, end)| parse(start, end));
    let over = |t: &std::sync::Mutex<Option<usize>>| *t.lock().unwrap_or_else(|e| e.into_inner());
    if over(&too_many).is_none()
        && parts.len() > 1
        && parts.iter().any(|p| matches!(p, Part::Unparsed))
    {
        count.store(0, std::sync::atomic::Ordering::Relaxed);
        parts = vec![parse(0, src.len())];
    }
    if let Some(at) = over(&too_many) {
        return Some((
            FileDecls {
                file: id,
                ..Default::default()
            },
            too_many_nodes(id, at).into(),
        ));
    }
    let mut out = FileDecls {
        file: id,
        ..Default::default()
    };
    let mut diags = Diagnostics::default();
    for p in parts {
        let Part::Decoded(decls, found) = p else {
            return None;
        };
        out.variables.extend(decls.variables);
        out.functions.extend(decls.functions);
        out.groups.extend(decls.groups);
        out.targets.extend(decls.targets);
        diags.extend(found);
    }
    Some((out, diags))
}

/// [`decode_file`] through knuffel only (the reference the fast path is
/// tested against).
pub fn decode_file_knuffel(
    id: FileId,
    name: &str,
    text: &str,
    diags: &mut Diagnostics,
) -> FileDecls {
    let Some(scan) = lenient_text(id, text, diags) else {
        return FileDecls {
            file: id,
            ..Default::default()
        };
    };
    let src = scan.as_deref().unwrap_or(text);
    decode_knuffel_guarded(id, name, text, src, diags)
}

/// Differential check (unit tests, `tests/cli.rs` and the `kdl_diff` fuzz
/// target): the hand-written parser and knuffel accept the same texts and
/// give the same tree, and [`decode_file`] gives the same declarations and
/// diagnostics as [`decode_file_knuffel`]. Panics on a difference. Texts with
/// an unclosed `/*` are skipped (knuffel takes exponential time on them, and
/// `decode_file` never parses them).
#[doc(hidden)]
pub fn check_against_knuffel(text: &str) {
    // knuffel recurses once per nesting level (up to the 200-level cap):
    // on a thread with room for it, whatever thread calls this (a 2 MiB
    // test thread in a debug build is not enough).
    crate::par::with_stack(KNUFFEL_STACK_BASE * 8, || check_against_knuffel_here(text));
}

fn check_against_knuffel_here(text: &str) {
    let scan = lenient::scan(text);
    if scan.open_comment.is_some() || scan.too_deep.is_some() {
        return;
    }
    let ours = kdl::parse(text);
    let theirs = knuffel::parse_ast::<knuffel::span::Span>("check.kdl", text);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => assert_eq!(a, &kdl::from_knuffel(b), "tree differs for {text:?}"),
        (Err(kdl::Rejected), Err(_)) => {}
        _ => panic!(
            "parsers disagree on {text:?}: hand parser ok={}, knuffel ok={}",
            ours.is_ok(),
            theirs.is_ok()
        ),
    }
    let mut fast = Diagnostics::default();
    let a = decode_file(0, "check.kdl", text, &mut fast);
    let mut slow = Diagnostics::default();
    let b = decode_file_knuffel(0, "check.kdl", text, &mut slow);
    assert_eq!(
        format!("{a:?}"),
        format!("{b:?}"),
        "declarations differ for {text:?}"
    );
    assert_eq!(fast.items, slow.items, "diagnostics differ for {text:?}");
}

/// A file that is not UTF-8: its text as shown in diagnostics (the bad
/// bytes replaced by U+FFFD, so everything before the first one keeps its
/// offsets) and the diagnostic, located at the first bad byte.
pub fn not_utf8(id: FileId, bytes: Vec<u8>) -> (String, Diag) {
    let at = match std::str::from_utf8(&bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    };
    let bad = bytes.get(at).copied().unwrap_or(0);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let d = Diag::new(
        "mybake::load::not-utf8",
        format!("the file is not valid UTF-8: byte 0x{bad:02x} cannot start or continue a character here"),
    )
    .label(Span::new(id, at, at + '\u{fffd}'.len_utf8()), "first invalid byte")
    .help("build files are UTF-8 text; re-save the file as UTF-8");
    (text, d)
}

fn too_deep(id: FileId, text: &str, at: usize) -> Diag {
    let (what, len) = if text[at..].starts_with('{') {
        ("blocks `{ }`", 1)
    } else {
        ("comments `/* */`", 2)
    };
    Diag::new(
        "mybake::load::too-deep",
        format!(
            "{what} are nested more than {} levels deep",
            lenient::MAX_NESTING
        ),
    )
    .label(Span::new(id, at, at + len), "one level too many")
    .help("a build file needs a few levels at most: check for unclosed or runaway blocks")
}

fn unterminated_comment(id: FileId, at: usize) -> Diag {
    Diag::new("mybake::load::syntax", "unterminated `/*` comment")
        .label(Span::new(id, at, at + 2), "opened here, never closed")
        .help("close it with `*/`")
}

fn decode_patched_knuffel(
    id: FileId,
    name: &str,
    text: &str,
    src: &str,
    diags: &mut Diagnostics,
) -> FileDecls {
    let mut out = FileDecls {
        file: id,
        ..Default::default()
    };
    let nodes: Vec<model::TopNode> = match knuffel::parse(name, src) {
        Ok(n) => n,
        Err(e) => {
            for d in knuffel_diags(id, text, &e) {
                diags.push(d);
            }
            // knuffel gives no partial result; when the syntax is fine,
            // still check target bodies so every problem shows at once.
            if let Ok(doc) = knuffel::parse_ast::<knuffel::span::Span>(name, src) {
                let doc = kdl::from_knuffel(&doc);
                for node in &doc.nodes {
                    if node.name != "target" {
                        continue;
                    }
                    let Some(arg) = node.args.first() else {
                        continue;
                    };
                    let kdl::Lit::Str(tn) = &arg.lit else {
                        continue;
                    };
                    let tname = Sp::new(tn.to_string(), arg.span.span(id));
                    target::decode_body(id, tname, node.span.span(id), node.children(), diags);
                }
            }
            return out;
        }
    };
    for node in nodes {
        match node {
            model::TopNode::Variable(v) => out.variables.push(variable(id, v, diags)),
            model::TopNode::Function(f) => {
                let body: Vec<kdl::Node> = f.body.iter().map(kdl::node_from_knuffel).collect();
                out.functions.push(function(
                    id,
                    sp(id, &f.name),
                    Span::from_knuffel(id, &f.span),
                    &body,
                    diags,
                ))
            }
            model::TopNode::Group(g) => out.groups.push(group(id, g, diags)),
            model::TopNode::Target(t) => {
                let body: Vec<kdl::Node> = t.body.iter().map(kdl::node_from_knuffel).collect();
                out.targets.push(target::decode_body(
                    id,
                    sp(id, &t.name),
                    Span::from_knuffel(id, &t.span),
                    &body,
                    diags,
                ))
            }
        }
    }
    out
}

fn plain_str(v: &kdl::Value) -> bool {
    v.type_name.is_none() && matches!(v.lit, kdl::Lit::Str(_))
}

/// One untyped string argument, no properties, no type annotation.
fn named_plain(n: &kdl::Node) -> bool {
    n.type_name.is_none() && n.args.len() == 1 && plain_str(&n.args[0])
}

/// Whether every top-level node has the shape knuffel's derive decoder
/// accepts without a diagnostic and the fast decoder handles (a subset:
/// anything else, e.g. a type annotation, goes through knuffel).
fn top_level_is_plain(doc: &kdl::Document) -> bool {
    doc.nodes.iter().all(|n| match &*n.name {
        "function" => named_plain(n) && n.props.is_empty(),
        "variable" => {
            named_plain(n)
                && n.props.iter().all(|p| match &*p.key {
                    "default" => p.value.type_name.is_none(),
                    "type" | "description" => plain_str(&p.value),
                    _ => false,
                })
        }
        "group" => {
            named_plain(n)
                && n.props.is_empty()
                && n.children().iter().all(|c| {
                    c.type_name.is_none()
                        && c.props.is_empty()
                        && c.children.is_none()
                        && c.args.iter().all(plain_str)
                        && match &*c.name {
                            "targets" => true,
                            "description" => c.args.len() == 1,
                            _ => false,
                        }
                })
        }
        "target" => named_plain(n) && n.props.is_empty(),
        _ => false,
    })
}

fn kstr(file: FileId, v: &kdl::Value) -> Sp<String> {
    match &v.lit {
        kdl::Lit::Str(s) => Sp::new(s.to_string(), v.span.span(file)),
        _ => Sp::new(String::new(), v.span.span(file)),
    }
}

/// Decode a document whose top level passed [`top_level_is_plain`].
fn decode_doc(id: FileId, doc: &kdl::Document, diags: &mut Diagnostics) -> FileDecls {
    let mut out = FileDecls {
        file: id,
        ..Default::default()
    };
    for n in &doc.nodes {
        let name = kstr(id, &n.args[0]);
        let span = n.span.span(id);
        match &*n.name {
            "variable" => {
                let prop = |k: &str| n.props.iter().find(|p| p.key == k).map(|p| &p.value);
                let default =
                    prop("default").and_then(|v| default_value(&v.lit, v.span.span(id), diags));
                out.variables.push(VariableDecl {
                    name,
                    span,
                    default,
                    ty: prop("type").map(|v| kstr(id, v)),
                    description: prop("description").map(|v| kstr(id, v)),
                    validations: validations(id, n.children(), diags),
                })
            }
            "function" => out
                .functions
                .push(function(id, name, span, n.children(), diags)),
            "group" => {
                let mut g = GroupDecl {
                    name,
                    span,
                    targets: None,
                    description: None,
                };
                for c in n.children() {
                    if c.name == "targets" {
                        g.targets
                            .get_or_insert_with(Vec::new)
                            .extend(c.args.iter().map(|a| kstr(id, a)));
                    } else {
                        let d = kstr(id, &c.args[0]);
                        if let Some(prev) = &g.description {
                            diags.push(duplicate("description", prev.span, d.span));
                        }
                        g.description = Some(d);
                    }
                }
                out.groups.push(g);
            }
            _ => out
                .targets
                .push(target::decode_body(id, name, span, n.children(), diags)),
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
        default_value(&kdl::lit_from_knuffel(&val.literal), span, diags)
    });
    let body: Vec<kdl::Node> = v.body.iter().map(kdl::node_from_knuffel).collect();
    VariableDecl {
        name: sp(file, &v.name),
        span: Span::from_knuffel(file, &v.span),
        default,
        ty: v.ty.as_ref().map(|t| sp(file, t)),
        description: v.description.as_ref().map(|t| sp(file, t)),
        validations: validations(file, &body, diags),
    }
}

/// A one-string argument of a child node (`None`, reported, otherwise).
fn one_string(file: FileId, c: &kdl::Node, diags: &mut Diagnostics) -> Option<Sp<String>> {
    match &c.args[..] {
        [v] if matches!(v.lit, kdl::Lit::Str(_)) => Some(kstr(file, v)),
        _ => {
            diags.push(
                Diag::new(
                    "mybake::load::arity",
                    format!("`{}` takes one string", c.name),
                )
                .label(c.name_span.span(file), "one string argument expected"),
            );
            None
        }
    }
}

/// Report the properties of `c` not in `allowed`, and any children.
fn only_props(file: FileId, c: &kdl::Node, allowed: &[&str], diags: &mut Diagnostics) {
    for p in &c.props {
        if !allowed.contains(&&*p.key) {
            diags.push(
                Diag::new(
                    "mybake::load::unknown",
                    format!("`{}` takes no property `{}`", c.name, p.key),
                )
                .label(p.key_span.span(file), "unexpected property")
                .help_opt(suggest(&p.key, allowed.iter().copied())),
            );
        }
    }
    if let Some(ch) = &c.children {
        diags.push(
            Diag::new(
                "mybake::load::unexpected-children",
                format!("`{}` takes no children block", c.name),
            )
            .label(ch.span.span(file), "unexpected block"),
        );
    }
}

/// A variable's children: `validation "${EXPR}" message="…"`.
fn validations(file: FileId, nodes: &[kdl::Node], diags: &mut Diagnostics) -> Vec<ValidationDecl> {
    let mut out = Vec::new();
    for c in nodes {
        if c.name != "validation" {
            diags.push(
                Diag::new(
                    "mybake::load::unknown",
                    format!("unknown node `{}` in a variable", c.name),
                )
                .label(c.name_span.span(file), "unknown node")
                .help_opt(suggest(&c.name, ["validation"]).or_else(|| {
                    Some("a variable's block holds `validation \"${EXPR}\" message=\"…\"`".into())
                })),
            );
            continue;
        }
        only_props(file, c, &["message"], diags);
        let message = c
            .props
            .iter()
            .find(|p| p.key == "message")
            .map(|p| match &p.value.lit {
                kdl::Lit::Str(_) => Some(kstr(file, &p.value)),
                _ => {
                    diags.push(
                        Diag::new("mybake::load::wrong-type", "`message` must be a string")
                            .label(p.value.span.span(file), "not a string"),
                    );
                    None
                }
            })
            .unwrap_or(None);
        if let Some(condition) = one_string(file, c, diags) {
            out.push(ValidationDecl { condition, message });
        }
    }
    out
}

const FUNCTION_NODES: &[&str] = &["params", "variadic-param", "result"];

/// `function "NAME" { params …; variadic-param …; result "…" }`.
fn function(
    file: FileId,
    name: Sp<String>,
    span: Span,
    nodes: &[kdl::Node],
    diags: &mut Diagnostics,
) -> FunctionDecl {
    let mut out = FunctionDecl {
        name,
        span,
        params: Vec::new(),
        variadic: None,
        result: None,
    };
    let ident = |s: &Sp<String>, diags: &mut Diagnostics| {
        let ok =
            s.v.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            diags.push(
                Diag::new(
                    "mybake::load::bad-name",
                    format!("invalid parameter name {:?}", s.v),
                )
                .label(
                    s.span,
                    "letters, digits, `_` and `-`, starting with a letter or `_`",
                ),
            );
        }
        ok
    };
    let mut seen: Vec<(&str, Span)> = Vec::new();
    for c in nodes {
        let at = c.name_span.span(file);
        if !FUNCTION_NODES.contains(&&*c.name) {
            diags.push(
                Diag::new(
                    "mybake::load::unknown",
                    format!("unknown node `{}` in a function", c.name),
                )
                .label(at, "unknown node")
                .help_opt(suggest(&c.name, FUNCTION_NODES.iter().copied())),
            );
            continue;
        }
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == &*c.name) {
            diags.push(duplicate(&c.name, *first, at));
            continue;
        }
        seen.push((
            FUNCTION_NODES
                .iter()
                .find(|n| **n == &*c.name)
                .copied()
                .unwrap_or(""),
            at,
        ));
        only_props(file, c, &[], diags);
        match &*c.name {
            "params" => {
                for a in &c.args {
                    match &a.lit {
                        kdl::Lit::Str(_) => {
                            let p = kstr(file, a);
                            if ident(&p, diags) {
                                out.params.push(p);
                            }
                        }
                        _ => diags.push(
                            Diag::new(
                                "mybake::load::wrong-type",
                                "a parameter name must be a string",
                            )
                            .label(a.span.span(file), "not a string"),
                        ),
                    }
                }
            }
            "variadic-param" => {
                out.variadic = one_string(file, c, diags).filter(|p| ident(p, diags));
            }
            _ => out.result = one_string(file, c, diags),
        }
    }
    if out.result.is_none() && !seen.iter().any(|(n, _)| *n == "result") {
        diags.push(
            Diag::new(
                "mybake::load::missing",
                format!("function `{}` has no `result`", out.name.v),
            )
            .label(out.name.span, "add `result \"${…}\"` to its block"),
        );
    }
    out
}

/// A variable's `default=`: a string, boolean or integer.
fn default_value(lit: &kdl::Lit, span: Span, diags: &mut Diagnostics) -> Option<Sp<DefaultValue>> {
    let d = match lit {
        kdl::Lit::Str(s) => Some(DefaultValue::Str(s.to_string())),
        kdl::Lit::Bool(b) => Some(DefaultValue::Bool(*b)),
        kdl::Lit::Int(..) => match lit.as_i64() {
            Some(Some(n)) => Some(DefaultValue::Int(n)),
            _ => {
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
                        other.kind()
                    ),
                )
                .label(span, "this value"),
            );
            None
        }
    };
    d.map(|d| Sp::new(d, span))
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

const TOP_NODES: &[&str] = &["variable", "function", "group", "target"];
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
        // knuffel abbreviates a long list of node names ("expected
        // `variable`, `function`, or one of 2 others"): name them all.
        let message = if message.starts_with("expected `variable`") {
            d.message = format!(
                "expected one of {}",
                TOP_NODES
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            d.message.clone()
        } else {
            message
        };
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

    /// The fast path against knuffel on the repository's build files, the
    /// fuzz seeds and the snapshot inputs of tests/cli.rs.
    #[test]
    fn fast_path_matches_knuffel_on_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for dir in [
            "examples/hello",
            "examples/monorepo",
            "examples/release",
            "fuzz/seeds/pipeline",
            "fuzz/seeds/lenient",
        ] {
            let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "kdl") {
                    if let Ok(t) = std::fs::read_to_string(&p) {
                        check_against_knuffel(&t);
                        n += 1;
                    }
                }
            }
        }
        assert!(n >= 5, "found only {n} files");
    }

    /// A file large enough to be decoded in parts, with problems in every
    /// part: the same declarations and diagnostics, in the same order, as
    /// knuffel's path.
    #[test]
    fn large_file_decoded_in_parts_matches_knuffel() {
        let mut text = String::from("variable \"TAG\" default=\"dev\"\n");
        let mut i = 0;
        while text.len() < 3 * PART_MIN_BYTES {
            text.push_str(&format!(
                "target \"t{i}\" {{\n    context \"svc/{i}\"\n    tags \"r/t{i}:${{TAG}}\"\n"
            ));
            if i % 97 == 0 {
                text.push_str("    platfroms \"linux/amd64\"\n    no-cache 3\n");
            }
            text.push_str("}\n");
            if i % 101 == 0 {
                text.push_str(&format!("group \"g{i}\" {{\n    targets \"t{i}\"\n}}\n"));
            }
            i += 1;
        }
        check_against_knuffel(&text);
        let (f, d) = decode(&text);
        assert_eq!(f.targets.len(), i);
        assert!(d.len() > 4, "{d:?}");
        let whole = format!("{:?}", decode_fast(0, &text, 1));
        for parts in 2..6 {
            assert_eq!(kdl::cut_points(&text, parts).len(), parts - 1);
            assert_eq!(format!("{:?}", decode_fast(0, &text, parts)), whole);
        }
    }

    /// Nesting at the cap is parsed by the hand-written parser on this
    /// thread (a 2 MiB test thread, debug build) and on `par::map`'s
    /// workers; one level more is refused before any parser runs.
    #[test]
    fn nesting_cap_fits_every_thread() {
        let deep = |levels: usize| {
            format!(
                "target \"d\" {{\n{}{}}}\n",
                "x {\n".repeat(levels - 1),
                "}\n".repeat(levels - 1)
            )
        };
        let at_cap = deep(lenient::MAX_NESTING);
        assert!(kdl::parse(&at_cap).is_ok());
        let (_, d) = decode(&at_cap);
        assert_eq!(d.items[0].code, "mybake::load::unknown", "{d:?}");
        // The deep target last in a file decoded in four parts.
        let mut text = String::new();
        let mut i = 0;
        while text.len() < 4 * PART_MIN_BYTES {
            text.push_str(&format!("target \"t{i}\" {{\n    context \"c\"\n}}\n"));
            i += 1;
        }
        text.push_str(&at_cap);
        assert_eq!(kdl::cut_points(&text, 4).len(), 3);
        let (decls, found) = decode_fast(0, &text, 4).expect("plain");
        assert_eq!(decls.targets.len(), i + 1);
        assert_eq!(found.items[0].code, "mybake::load::unknown");
        let (_, d) = decode(&deep(lenient::MAX_NESTING + 1));
        assert_eq!(d.items[0].code, "mybake::load::too-deep", "{d:?}");
    }

    /// Random token soup (deterministic): both parsers must agree on every
    /// text, valid or not.
    #[test]
    fn fast_path_matches_knuffel_on_token_soup() {
        const TOKENS: &[&str] = &[
            "target",
            "variable",
            "group",
            "targets",
            "description",
            "context",
            "tags",
            "arg",
            "contexts",
            "matrix",
            "output",
            "secret",
            "platforms",
            "inherits",
            "a",
            " ",
            "  ",
            "\t",
            "\n",
            "\r\n",
            "\r",
            ";",
            "{",
            "}",
            "\"x\"",
            "\"a b\"",
            "\"\\n\"",
            "\"\\u{41}\"",
            "\"\\u{}\"",
            "\"\\q\"",
            "\"",
            "r\"raw\"",
            "r#\"h\"#",
            "r#\"",
            "r",
            "#",
            "=",
            "k=",
            "default=",
            "type=",
            "id=",
            "1",
            "-1",
            "+2",
            "0x1f",
            "0b10",
            "0o7",
            "0x",
            "1.5",
            "1e5",
            "1e",
            "1_0",
            ".",
            "true",
            "false",
            "null",
            "nullx",
            "(t)",
            "(",
            ")",
            "/-",
            "//c\n",
            "// c",
            "/*c*/",
            "*/",
            "\\",
            "\\\n",
            "-",
            "+",
            "--",
            "é",
            "\u{a0}",
            "\u{feff}",
            "\u{85}",
            "\u{2028}",
            "\u{c}",
            "!",
            "_",
            "x=y",
            "(\"q\")",
            "=\"v\"",
            "2a",
            "${X}",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..4000 {
            let len = (rnd() % 16) as usize + 1;
            let mut s = String::new();
            for _ in 0..len {
                s.push_str(TOKENS[(rnd() % TOKENS.len() as u64) as usize]);
            }
            check_against_knuffel(&s);
        }
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
