//! Located diagnostics shared by every stage.
//!
//! Each stage has its own error enum (`LoadError`, `ResolveError`,
//! `PlanError`); each converts into a [`Diag`]: a message, a stable code,
//! labelled spans and optional help. [`Diagnostics`] collects all of them so a
//! run reports every configuration error at once, then renders them through
//! miette (a label in another file becomes a related diagnostic, so every
//! label is shown with its own `file:line:col`).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan};

use crate::source::{NamedText, Sources, Span};

/// One located problem.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diag {
    /// Stable machine-readable code, e.g. `mybake::resolve::unknown-target`.
    pub code: &'static str,
    pub message: String,
    /// Labels, the first one primary.
    pub labels: Vec<(Span, String)>,
    pub help: Option<String>,
}

impl Diag {
    pub fn new(code: &'static str, message: impl Into<String>) -> Diag {
        Diag {
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }
    pub fn label(mut self, span: Span, text: impl Into<String>) -> Diag {
        self.labels.push((span, text.into()));
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Diag {
        self.help = Some(help.into());
        self
    }
    pub fn help_opt(mut self, help: Option<String>) -> Diag {
        if help.is_some() {
            self.help = help;
        }
        self
    }
    /// Primary span (first label), if any.
    pub fn span(&self) -> Option<Span> {
        self.labels.first().map(|l| l.0)
    }
}

/// Most diagnostics kept in one [`Diagnostics`]; more are only counted (a
/// file with a million bad lines must not hold, sort and render a million
/// reports).
pub const MAX_KEPT: usize = 10_000;

/// Most diagnostics [`render`] draws; the count line still gives the total.
pub const MAX_RENDERED: usize = 200;

/// A list of diagnostics; non-empty means the configuration is invalid.
#[derive(Default, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diag>,
    /// Hashes of the diagnostics pushed (a duplicate is looked for among
    /// `items` only when its hash was seen: pushing stays linear).
    seen: crate::FastSet<u64>,
    /// Diagnostics left out once [`MAX_KEPT`] were kept.
    dropped: usize,
}

impl Diagnostics {
    pub fn push(&mut self, d: impl Into<Diag>) {
        use std::hash::BuildHasher;
        let d = d.into();
        let h = foldhash::fast::FixedState::default().hash_one(&d);
        // Seen before: a duplicate of one kept (or, once full, of one
        // already counted).
        if !self.seen.insert(h) && (self.is_full() || self.items.contains(&d)) {
            return;
        }
        if self.items.len() >= MAX_KEPT {
            self.dropped += 1;
            return;
        }
        self.items.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.dropped == 0
    }
    /// Whether [`MAX_KEPT`] diagnostics are kept: a caller may count a new
    /// one ([`Self::count_dropped`]) instead of building it.
    pub fn is_full(&self) -> bool {
        self.items.len() >= MAX_KEPT
    }
    pub fn count_dropped(&mut self) {
        self.dropped += 1;
    }
    /// How many problems, counting those left out ([`MAX_KEPT`]).
    pub fn len(&self) -> usize {
        self.items.len() + self.dropped
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.dropped += other.dropped;
        for d in other.items {
            self.push(d);
        }
    }
    /// Order by file and position so output is stable and reads top-down.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| {
            let s = d.span().unwrap_or(Span::NONE);
            (s.file, s.start, s.end)
        });
    }
    /// `Err(self)` when anything was reported.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// The diagnostics (the hash set is an index, and its order is random).
impl fmt::Debug for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Diagnostics");
        d.field("items", &self.items);
        if self.dropped > 0 {
            d.field("dropped", &self.dropped);
        }
        d.finish()
    }
}

impl From<Diag> for Diagnostics {
    fn from(d: Diag) -> Self {
        let mut out = Diagnostics::default();
        out.push(d);
        out
    }
}

/// How to draw diagnostics.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    pub color: bool,
    pub width: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            color: false,
            width: 100,
        }
    }
}

/// Characters never written raw to a terminal: C0 and C1 controls, DEL,
/// and the bidirectional overrides and isolates (which reorder the text
/// shown around them).
pub fn is_hostile_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with [`is_hostile_char`]s escaped (`\n`, `\t`, `\u{1b}`); borrowed
/// when there are none.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hostile_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hostile_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// JSON text with the [`is_hostile_char`]s that JSON allows raw (DEL, C1
/// controls, bidi overrides; serde_json escapes the C0 ones) written as
/// `\uXXXX` escapes: the same JSON value, safe on a terminal. They can only
/// appear inside strings, so the whole text is scanned; the text is
/// returned as is (no copy) when it has none.
pub fn escape_json_extra(json: String) -> String {
    // Usually ASCII without DEL (both checks are the standard library's
    // fast scans: `print` writes megabytes).
    if json.is_ascii() && !json.as_bytes().contains(&0x7f) {
        return json;
    }
    if !json.chars().any(is_hostile_char) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        // C0 controls are escaped by serde_json already.
        if is_hostile_char(c) && c >= '\u{7f}' {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A source text as shown in snippets: [`is_hostile_char`]s replaced by
/// `?` (one per byte, so every span still fits), except tabs, newlines and
/// the CR of a CRLF.
fn shown_text(text: &Arc<str>) -> Arc<str> {
    let hostile = |(i, c): (usize, char)| {
        is_hostile_char(c)
            && c != '\n'
            && c != '\t'
            && !(c == '\r' && text.as_bytes().get(i + 1) == Some(&b'\n'))
    };
    if !text.char_indices().any(hostile) {
        return text.clone();
    }
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if hostile((i, c)) {
            out.extend(std::iter::repeat_n('?', c.len_utf8()));
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Lines longer than this around a label are not shown: the message still
/// gives `file:line:col` (a minified or generated file can be one line of
/// megabytes).
const MAX_SNIPPET_BYTES: usize = 4096;

/// Whether the lines around `span` (one before and after, as miette shows
/// them) are short enough to show.
fn snippet_fits(text: &str, span: Span) -> bool {
    let b = text.as_bytes();
    let at = (span.start as usize).min(b.len());
    let end = (span.end as usize).clamp(at, b.len());
    let mut start = at;
    for _ in 0..2 {
        match b[..start].iter().rposition(|&c| c == b'\n') {
            Some(k) => start = k,
            None => {
                start = 0;
                break;
            }
        }
    }
    let mut stop = end;
    for _ in 0..2 {
        match b[stop.min(b.len())..].iter().position(|&c| c == b'\n') {
            Some(k) => stop = stop + k + 1,
            None => {
                stop = b.len();
                break;
            }
        }
        if stop - start > MAX_SNIPPET_BYTES {
            return false;
        }
    }
    stop - start <= MAX_SNIPPET_BYTES
}

/// Render every diagnostic (sorted), followed by a count line.
pub fn render(diags: &Diagnostics, sources: &Sources, opts: RenderOptions) -> String {
    let theme = if opts.color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(opts.width)
        .with_links(false);
    let mut out = String::new();
    let mut sorted = diags.clone();
    sorted.sort();
    let shown: Vec<OnceCell<Arc<str>>> = (0..sources.len()).map(|_| OnceCell::new()).collect();
    for d in sorted.items.iter().take(MAX_RENDERED) {
        let r = Rendered::build(d, sources, &shown);
        let mut s = String::new();
        if handler.render_report(&mut s, &r).is_err() {
            s = format!("error: {}\n", escape_controls(&d.message));
        }
        out.push_str(&s);
        out.push('\n');
    }
    let n = sorted.len();
    if n > MAX_RENDERED {
        out.push_str(&format!(
            "({} more problems are not shown)\n\n",
            n - MAX_RENDERED
        ));
    }
    out.push_str(&format!(
        "error: {} problem{} in the build configuration; nothing was built\n",
        n,
        if n == 1 { "" } else { "s" }
    ));
    out
}

/// Plain one-line-per-error form (`file:line:col: message`) for logs/JSON.
pub fn render_short(diags: &Diagnostics, sources: &Sources) -> String {
    let mut sorted = diags.clone();
    sorted.sort();
    let mut out = String::new();
    for d in &sorted.items {
        let message = escape_controls(&d.message);
        match d.span() {
            Some(s) if !s.is_none() => out.push_str(&format!(
                "{}: {message}\n",
                escape_controls(&sources.location(s))
            )),
            _ => out.push_str(&format!("{message}\n")),
        }
    }
    out
}

/// A diagnostic prepared for miette: labels of the primary file stay here,
/// labels elsewhere become related diagnostics with their own source.
#[derive(Debug)]
struct Rendered {
    code: &'static str,
    message: String,
    help: Option<String>,
    source: Option<NamedText>,
    labels: Vec<LabeledSpan>,
    related: Vec<Rendered>,
}

impl Rendered {
    /// `shown`: each file's [`shown_text`], made on first use.
    fn build(d: &Diag, sources: &Sources, shown: &[OnceCell<Arc<str>>]) -> Rendered {
        // Every text that goes out is escaped ([`escape_controls`]), and
        // snippets show the source through [`shown_text`].
        let named = |span: Span| {
            let f = sources.get(span.file)?;
            if !snippet_fits(&f.text, span) {
                return None;
            }
            let text = match shown.get(span.file as usize) {
                Some(cell) => cell.get_or_init(|| shown_text(&f.text)).clone(),
                None => shown_text(&f.text),
            };
            Some(NamedText {
                name: escape_controls(&f.name).into_owned(),
                text,
            })
        };
        let primary = d.labels.iter().map(|l| l.0).find(|s| !s.is_none());
        // miette 5's snippet header shows where the context starts, not
        // the label, so the message itself leads with `file:line:col`.
        let message = match primary {
            Some(p) => format!(
                "{}: {}",
                escape_controls(&sources.location(p)),
                escape_controls(&d.message)
            ),
            None => escape_controls(&d.message).into_owned(),
        };
        let source = primary.and_then(named);
        let mut r = Rendered {
            code: d.code,
            message,
            help: d.help.as_deref().map(|h| escape_controls(h).into_owned()),
            labels: Vec::new(),
            related: Vec::new(),
            source,
        };
        for (span, text) in &d.labels {
            if span.is_none() {
                continue;
            }
            let text = escape_controls(text).into_owned();
            if Some(span.file) == primary.map(|p| p.file) {
                if r.source.is_some() && snippet_fits_in(sources, *span) {
                    r.labels
                        .push(LabeledSpan::new_with_span(Some(text), span.miette()));
                }
            } else if sources.get(span.file).is_some() {
                let source = named(*span);
                let labels = match source {
                    Some(_) => vec![LabeledSpan::new_with_span(
                        Some(text.clone()),
                        span.miette(),
                    )],
                    None => Vec::new(),
                };
                r.related.push(Rendered {
                    code: "",
                    message: format!("{}: {}", escape_controls(&sources.location(*span)), text),
                    help: None,
                    source,
                    labels,
                    related: Vec::new(),
                });
            }
        }
        r
    }
}

/// [`snippet_fits`] for a span of a known file.
fn snippet_fits_in(sources: &Sources, span: Span) -> bool {
    sources
        .get(span.file)
        .is_some_and(|f| snippet_fits(&f.text, span))
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        if self.code.is_empty() {
            None
        } else {
            Some(Box::new(self.code))
        }
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)))
        }
    }
}

/// Most names a cycle or chain message spells out: longer paths keep their
/// first and last names, with the count of those left out in between.
pub const PATH_NAMES_SHOWN: usize = 16;

/// `a -> b -> c`, eliding the middle of a long path (a cycle through
/// thousands of names makes one line, not a page).
pub fn elide_path(names: &[&str]) -> String {
    if names.len() <= PATH_NAMES_SHOWN {
        return names.join(" -> ");
    }
    let head = PATH_NAMES_SHOWN / 2;
    let tail = PATH_NAMES_SHOWN - head;
    format!(
        "{} -> ({} more) -> {}",
        names[..head].join(" -> "),
        names.len() - head - tail,
        names[names.len() - tail..].join(" -> ")
    )
}

/// "did you mean" among `candidates` (Jaro-Winkler / Levenshtein).
///
/// The answer does not depend on the candidates' order (they often come
/// from a hash map): of equally close names, the first in byte order wins.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let lev = strsim::osa_distance(word, c);
        let score = strsim::jaro_winkler(word, c);
        let close = lev * 3 <= word.len().max(c.len()) || score > 0.85;
        if close && best.is_none_or(|(b, bc)| score > b || (score == b && c < bc)) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(
            suggest("platfroms", ["platforms", "tags"]).as_deref(),
            Some("did you mean `platforms`?")
        );
        assert_eq!(
            suggest("dockrfile", ["dockerfile", "dockerfile-inline"]).as_deref(),
            Some("did you mean `dockerfile`?")
        );
        assert_eq!(suggest("zzz", ["platforms", "tags"]), None);
    }

    #[test]
    fn ties_do_not_depend_on_order() {
        let names = ["lib-2", "lib-0", "lib-3", "lib-1"];
        let want = Some("did you mean `lib-0`?".to_string());
        assert_eq!(suggest("lib-9", names), want);
        assert_eq!(suggest("lib-9", names.iter().rev().copied()), want);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("ok"), "ok");
        assert_eq!(escape_controls("a\u{1b}[31m\nb"), "a\\u{1b}[31m\\nb");
        assert_eq!(escape_controls("\u{9b}\u{202e}"), "\\u{9b}\\u{202e}");
        let mut src = Sources::default();
        let f = src.add(
            "m\u{1b}.kdl".into(),
            "/x/m.kdl".into(),
            "target \"a\u{1b}[2J\u{85}\" {}\r\n".into(),
        );
        let d = Diag::new("mybake::test", "bad name `a\u{1b}[2J`")
            .label(Span::new(f, 7, 16), "here \u{7}")
            .help("x\u{1b}");
        for out in [
            render(&d.clone().into(), &src, RenderOptions::default()),
            render_short(&d.into(), &src),
        ] {
            assert!(
                !out.chars().any(|c| is_hostile_char(c) && c != '\n'),
                "{out:?}"
            );
            assert!(out.contains("a\\u{1b}[2J"), "{out}");
        }
    }

    #[test]
    fn many_problems_are_counted_not_all_kept() {
        let mut d = Diagnostics::default();
        for i in 0..MAX_KEPT + 500 {
            d.push(Diag::new("mybake::test", format!("problem {i}")));
            d.push(Diag::new("mybake::test", format!("problem {i}")));
        }
        assert_eq!(d.items.len(), MAX_KEPT);
        assert_eq!(d.len(), MAX_KEPT + 500);
        let out = render(&d, &Sources::default(), RenderOptions::default());
        assert!(out.contains("(10300 more problems are not shown)"), "{out}");
        assert!(
            out.ends_with("error: 10500 problems in the build configuration; nothing was built\n")
        );
    }

    #[test]
    fn json_keeps_no_raw_controls() {
        let j = serde_json::to_string(&"a\u{1b}\u{7f}\u{9b}\u{202e}é—b").unwrap();
        let out = escape_json_extra(j);
        assert_eq!(out, "\"a\\u001b\\u007f\\u009b\\u202eé—b\"");
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\u{1b}\u{7f}\u{9b}\u{202e}é—b");
    }

    #[test]
    fn long_lines_are_not_shown() {
        let mut src = Sources::default();
        let line = "x".repeat(100_000);
        let f = src.add("m.kdl".into(), "/x/m.kdl".into(), format!("a\n{line}\nb\n"));
        let d = Diag::new("mybake::test", "problem").label(Span::new(f, 50_000, 50_001), "here");
        let out = render(&d.into(), &src, RenderOptions::default());
        assert!(out.len() < 1000, "{}", out.len());
        assert!(out.contains("m.kdl:2:49999: problem"), "{out}");
    }

    #[test]
    fn renders_file_line_col_and_count() {
        let mut src = Sources::default();
        let f = src.add(
            "mybake.kdl".into(),
            "/x/mybake.kdl".into(),
            "target \"a\" {\n    platfroms \"x\"\n}\n".into(),
        );
        let d = Diag::new("mybake::test", "unknown attribute `platfroms`")
            .label(Span::new(f, 17, 26), "here")
            .help("did you mean `platforms`?");
        let out = render(&d.into(), &src, RenderOptions::default());
        assert!(out.contains("mybake.kdl:2:5"), "{out}");
        assert!(out.contains("did you mean `platforms`?"), "{out}");
        assert!(
            out.contains("1 problem in the build configuration"),
            "{out}"
        );
    }
}
