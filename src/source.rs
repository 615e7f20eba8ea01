//! Source files and spans. Every value read from a build file carries a
//! [`Span`] (file id + byte range) through every stage, so any later error
//! can point back at the KDL that caused it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// Index of a file in [`Sources`].
pub type FileId = u32;

/// A byte range in one source file. `Span::NONE` marks values that did not
/// come from a file (command-line `--set`, built-in defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub const NONE: Span = Span {
        file: u32::MAX,
        start: 0,
        end: 0,
    };

    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }

    pub fn is_none(&self) -> bool {
        self.file == u32::MAX
    }

    pub fn from_knuffel(file: FileId, s: &knuffel::span::Span) -> Span {
        Span::new(file, s.0, s.1)
    }

    /// A sub-range of this span, `offset..offset+len` relative to its start
    /// (used to point inside a string literal).
    pub fn sub(&self, offset: usize, len: usize) -> Span {
        if self.is_none() {
            return *self;
        }
        let start = (self.start as usize + offset).min(self.end as usize);
        let end = (start + len).min(self.end as usize);
        Span::new(self.file, start, end)
    }

    pub fn miette(&self) -> SourceSpan {
        (self.start as usize, (self.end - self.start) as usize).into()
    }
}

/// A value with the span it came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sp<T> {
    pub v: T,
    pub span: Span,
}

impl<T> Sp<T> {
    pub fn new(v: T, span: Span) -> Self {
        Sp { v, span }
    }
    pub fn none(v: T) -> Self {
        Sp {
            v,
            span: Span::NONE,
        }
    }
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Sp<U> {
        Sp {
            v: f(self.v),
            span: self.span,
        }
    }
}

impl<T> std::ops::Deref for Sp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.v
    }
}

/// One loaded build file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Name shown in diagnostics (the path as given or found).
    pub name: String,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// Absolute directory of the file: relative paths in it resolve here.
    pub dir: PathBuf,
    pub text: Arc<str>,
}

/// All files of a run, indexed by [`FileId`].
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    pub fn add(&mut self, name: String, path: PathBuf, text: String) -> FileId {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.files.push(SourceFile {
            name,
            path,
            dir,
            text: text.into(),
        });
        (self.files.len() - 1) as FileId
    }

    /// Register a pseudo-file (e.g. the text of a `--set` flag) so that
    /// errors in it can be shown like errors in a build file.
    pub fn add_virtual(&mut self, name: String, text: String, dir: PathBuf) -> FileId {
        self.files.push(SourceFile {
            name,
            path: PathBuf::new(),
            dir,
            text: text.into(),
        });
        (self.files.len() - 1) as FileId
    }

    pub fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id as usize)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files.iter().enumerate().map(|(i, f)| (i as FileId, f))
    }

    /// `file:line:col` of a span (1-based), for plain-text locations.
    pub fn location(&self, span: Span) -> String {
        let Some(f) = self.get(span.file) else {
            return "<command line>".into();
        };
        let (line, col) = line_col(&f.text, span.start as usize);
        format!("{}:{}:{}", f.name, line, col)
    }

    /// The source text a span covers.
    pub fn snippet(&self, span: Span) -> &str {
        match self.get(span.file) {
            Some(f) => f
                .text
                .get(span.start as usize..span.end as usize)
                .unwrap_or(""),
            None => "",
        }
    }
}

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// A named, shareable source for miette.
#[derive(Debug, Clone)]
pub struct NamedText {
    pub name: String,
    pub text: Arc<str>,
}

impl SourceCode for NamedText {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner =
            self.text
                .as_ref()
                .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based() {
        let t = "ab\ncd\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 1), (1, 2));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 4), (2, 2));
    }

    #[test]
    fn sub_span_is_clamped() {
        let s = Span::new(0, 10, 20);
        assert_eq!(s.sub(2, 3), Span::new(0, 12, 15));
        assert_eq!(s.sub(8, 30), Span::new(0, 18, 20));
        assert!(Span::NONE.sub(1, 1).is_none());
    }
}
