//! Located diagnostics shared by every stage.
//!
//! Each stage has its own error enum (`LoadError`, `ResolveError`,
//! `PlanError`); each converts into a [`Diag`]: a message, a stable code,
//! labelled spans and optional help. [`Diagnostics`] collects all of them so a
//! run reports every configuration error at once, then renders them through
//! miette (a label in another file becomes a related diagnostic, so every
//! label is shown with its own `file:line:col`).

use std::fmt;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan};

use crate::source::{NamedText, Sources, Span};

/// One located problem.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A list of diagnostics; non-empty means the configuration is invalid.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diag>,
}

impl Diagnostics {
    pub fn push(&mut self, d: impl Into<Diag>) {
        let d = d.into();
        if !self.items.contains(&d) {
            self.items.push(d);
        }
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn extend(&mut self, other: Diagnostics) {
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

impl From<Diag> for Diagnostics {
    fn from(d: Diag) -> Self {
        Diagnostics { items: vec![d] }
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
    for d in &sorted.items {
        let r = Rendered::build(d, sources);
        let mut s = String::new();
        if handler.render_report(&mut s, &r).is_err() {
            s = format!("error: {}\n", d.message);
        }
        out.push_str(&s);
        out.push('\n');
    }
    let n = sorted.len();
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
        match d.span() {
            Some(s) if !s.is_none() => {
                out.push_str(&format!("{}: {}\n", sources.location(s), d.message))
            }
            _ => out.push_str(&format!("{}\n", d.message)),
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
    fn build(d: &Diag, sources: &Sources) -> Rendered {
        let primary = d.labels.iter().map(|l| l.0).find(|s| !s.is_none());
        // miette 5's snippet header shows where the context starts, not
        // the label, so the message itself leads with `file:line:col`.
        let message = match primary {
            Some(p) => format!("{}: {}", sources.location(p), d.message),
            None => d.message.clone(),
        };
        let mut r = Rendered {
            code: d.code,
            message,
            help: d.help.clone(),
            source: primary
                .and_then(|s| sources.get(s.file))
                .map(|f| NamedText {
                    name: f.name.clone(),
                    text: f.text.clone(),
                }),
            labels: Vec::new(),
            related: Vec::new(),
        };
        for (span, text) in &d.labels {
            if span.is_none() {
                continue;
            }
            if Some(span.file) == primary.map(|p| p.file) {
                r.labels.push(LabeledSpan::new_with_span(
                    Some(text.clone()),
                    span.miette(),
                ));
            } else if let Some(f) = sources.get(span.file) {
                r.related.push(Rendered {
                    code: "",
                    message: format!("{}: {}", sources.location(*span), text),
                    help: None,
                    source: Some(NamedText {
                        name: f.name.clone(),
                        text: f.text.clone(),
                    }),
                    labels: vec![LabeledSpan::new_with_span(
                        Some(text.clone()),
                        span.miette(),
                    )],
                    related: Vec::new(),
                });
            }
        }
        r
    }
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
