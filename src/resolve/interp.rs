//! `${NAME}` interpolation with `$${` as an escaped literal `${`.

use std::borrow::Cow;

use crate::diag::{suggest, Diag};
use crate::source::{Sources, Sp, Span};

/// What a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Text(String),
    List(Vec<String>),
}

impl Val {
    /// The text form (a list joined with `,`).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.push_to(&mut out);
        out
    }
    /// [`Val::to_text`], keeping a text's string.
    pub fn into_text(self) -> String {
        match self {
            Val::Text(s) => s,
            list => list.to_text(),
        }
    }
    /// Append the text form.
    fn push_to(&self, out: &mut String) {
        match self {
            Val::Text(s) => out.push_str(s),
            Val::List(l) => {
                for (k, item) in l.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    out.push_str(item);
                }
            }
        }
    }
}

/// Name lookup for interpolation.
pub trait Scope {
    /// `Ok(None)` = unknown name; `Err` = known but unusable (the
    /// diagnostic explains why, e.g. a variable with no value). A value the
    /// scope holds is lent, not copied.
    fn lookup(&self, name: &str, at: Span) -> Result<Option<Cow<'_, Val>>, Diag>;
    /// Names offered as suggestions for an unknown one.
    fn names(&self) -> Vec<String>;
}

/// A piece of a template string.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Lit(&'a str),
    /// `${`-escape produced a literal `${`.
    Dollar,
    /// A reference: name and its byte offset in the string.
    Ref(&'a str, usize),
}

fn parse(s: &str) -> Result<Vec<Piece<'_>>, (usize, &'static str)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    let mut lit_start = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1) == Some(&b'$') && b.get(i + 2) == Some(&b'{') {
            if lit_start < i {
                out.push(Piece::Lit(&s[lit_start..i]));
            }
            out.push(Piece::Dollar);
            i += 3;
            lit_start = i;
        } else if b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
            if lit_start < i {
                out.push(Piece::Lit(&s[lit_start..i]));
            }
            let Some(close) = s[i + 2..].find('}') else {
                return Err((i, "unterminated `${`"));
            };
            let name = &s[i + 2..i + 2 + close];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                return Err((i, "invalid name in `${…}` (letters, digits, `_`, `-`, `.`)"));
            }
            out.push(Piece::Ref(name, i));
            i += 3 + close;
            lit_start = i;
        } else {
            i += 1;
        }
    }
    if lit_start < b.len() {
        out.push(Piece::Lit(&s[lit_start..]));
    }
    Ok(out)
}

/// True when the string needs no interpolation work (fast path).
pub fn is_plain(s: &str) -> bool {
    !s.contains('$')
}

/// Span of `len` bytes at `offset` inside the string literal at `span`,
/// when the literal is written without escapes (else the whole literal).
pub fn inner_span(sources: &Sources, lit: &Sp<String>, offset: usize, len: usize) -> Span {
    let src = sources.snippet(lit.span);
    if src.len() == lit.v.len() + 2 && src.starts_with('"') && src[1..src.len() - 1] == lit.v {
        lit.span.sub(1 + offset, len)
    } else {
        lit.span
    }
}

/// Interpolate `s`. When `allow_list` and `s` is exactly one reference to a
/// list, the list is returned as is.
pub fn interpolate(
    s: &Sp<String>,
    scope: &dyn Scope,
    sources: &Sources,
    allow_list: bool,
) -> Result<Val, Diag> {
    if is_plain(&s.v) {
        return Ok(Val::Text(s.v.clone()));
    }
    let pieces = parse(&s.v).map_err(|(off, msg)| {
        Diag::new("mybake::resolve::bad-interpolation", msg)
            .label(inner_span(sources, s, off, 2), "here")
            .help("write `$${` for a literal `${`")
    })?;
    if allow_list && pieces.len() == 1 {
        if let Piece::Ref(name, off) = pieces[0] {
            return lookup(s, name, off, scope, sources).map(Cow::into_owned);
        }
    }
    let mut out = String::with_capacity(s.v.len() + 32);
    for p in pieces {
        match p {
            Piece::Lit(l) => out.push_str(l),
            Piece::Dollar => out.push_str("${"),
            Piece::Ref(name, off) => lookup(s, name, off, scope, sources)?.push_to(&mut out),
        }
    }
    Ok(Val::Text(out))
}

fn lookup<'s>(
    s: &Sp<String>,
    name: &str,
    off: usize,
    scope: &'s dyn Scope,
    sources: &Sources,
) -> Result<Cow<'s, Val>, Diag> {
    let at = inner_span(sources, s, off, name.len() + 3);
    match scope.lookup(name, at)? {
        Some(v) => Ok(v),
        None => {
            let names = scope.names();
            Err(Diag::new(
                "mybake::resolve::unknown-variable",
                format!("unknown variable `{name}`"),
            )
            .label(at, "not a variable, matrix axis or built-in")
            .help_opt(suggest(name, names.iter().map(String::as_str)).or_else(|| {
                Some(format!(
                    "declare it with `variable \"{name}\" default=\"…\"`"
                ))
            })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct M(HashMap<&'static str, Val>);
    impl Scope for M {
        fn lookup(&self, name: &str, _: Span) -> Result<Option<Cow<'_, Val>>, Diag> {
            Ok(self.0.get(name).map(Cow::Borrowed))
        }
        fn names(&self) -> Vec<String> {
            self.0.keys().map(|k| k.to_string()).collect()
        }
    }

    fn scope() -> M {
        M(HashMap::from([
            ("TAG", Val::Text("dev".into())),
            ("P", Val::List(vec!["a".into(), "b".into()])),
        ]))
    }

    fn run(s: &str, list: bool) -> Result<Val, Diag> {
        interpolate(
            &Sp::none(s.to_string()),
            &scope(),
            &Sources::default(),
            list,
        )
    }

    #[test]
    fn substitutes_and_escapes() {
        assert_eq!(run("x:${TAG}", false).unwrap(), Val::Text("x:dev".into()));
        assert_eq!(
            run("$${TAG}-${TAG}", false).unwrap(),
            Val::Text("${TAG}-dev".into())
        );
        assert_eq!(
            run("$5 and $", false).unwrap(),
            Val::Text("$5 and $".into())
        );
    }

    #[test]
    fn list_alone_expands_else_joins() {
        assert_eq!(
            run("${P}", true).unwrap(),
            Val::List(vec!["a".into(), "b".into()])
        );
        assert_eq!(run("${P}", false).unwrap(), Val::Text("a,b".into()));
        assert_eq!(run("x${P}", true).unwrap(), Val::Text("xa,b".into()));
    }

    #[test]
    fn errors() {
        let e = run("${TGA}", false).unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `TAG`?"));
        assert!(run("${TAG", false)
            .unwrap_err()
            .message
            .contains("unterminated"));
        assert!(run("${a b}", false).is_err());
    }

    #[test]
    fn inner_span_points_inside_literal() {
        let mut src = Sources::default();
        let f = src.add("f".into(), "/f".into(), "tags \"x:${TAG}\"".into());
        let lit = Sp::new("x:${TAG}".to_string(), Span::new(f, 5, 15));
        assert_eq!(inner_span(&src, &lit, 2, 6), Span::new(f, 8, 14));
    }
}
