//! `${NAME}` interpolation with `$${` as an escaped literal `${`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Longest text one interpolation may produce (1 MiB). Real values are a
/// few hundred bytes; this stops a value doubling itself through variables
/// (`${A}${A}`, forty times) long before memory runs out.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Most bytes all interpolations of one run may produce together (64 MiB):
/// each value below [`MAX_VALUE_BYTES`] can still be used by thousands of
/// targets. A 5,000-target configuration produces about 2 MB.
pub const MAX_TOTAL_BYTES: usize = 64 << 20;

/// What the interpolations of one run have produced so far (shared by the
/// threads that resolve targets at once).
#[derive(Debug, Default)]
pub struct Budget {
    used: AtomicUsize,
    resolved: AtomicUsize,
    suggest: AtomicUsize,
}

/// Most name comparisons "did you mean" suggestions may cost in one run
/// (each unknown name is compared with every candidate: ten thousand
/// unknown references among ten thousand targets would be 10^8).
pub const MAX_SUGGEST_WORK: usize = 1_000_000;

/// Most bytes of text all resolved targets may hold together (64 MiB,
/// counting a value shared through `inherits` once per target, as `print`
/// writes it): a large value inherited by thousands of targets would
/// otherwise make gigabytes of output from a small file.
pub const MAX_RESOLVED_BYTES: usize = 64 << 20;

impl Budget {
    /// Whether a suggestion among `candidates` names may still be made.
    pub fn may_suggest(&self, candidates: usize) -> bool {
        let before = self.suggest.fetch_add(candidates, Ordering::Relaxed);
        before.saturating_add(candidates) <= MAX_SUGGEST_WORK
    }

    /// Count a resolved target's `n` bytes of text: `None` while the
    /// total is within [`MAX_RESOLVED_BYTES`], then `Some(true)` for the
    /// target that passes it (reported once) and `Some(false)` after.
    pub fn charge_resolved(&self, n: usize) -> Option<bool> {
        let before = self.resolved.fetch_add(n, Ordering::Relaxed);
        (before.saturating_add(n) > MAX_RESOLVED_BYTES).then_some(before <= MAX_RESOLVED_BYTES)
    }

    /// Count `n` more bytes; `false` once the total is over
    /// [`MAX_TOTAL_BYTES`].
    pub fn charge(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        before.saturating_add(n) <= MAX_TOTAL_BYTES
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
    /// The run's budget, when interpolations are counted against one.
    fn budget(&self) -> Option<&Budget> {
        None
    }
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

/// The names `s` refers to, in order (none when it does not parse:
/// interpolating it fails before any lookup).
pub fn references(s: &str) -> Vec<&str> {
    if is_plain(s) {
        return Vec::new();
    }
    match parse(s) {
        Ok(pieces) => pieces
            .into_iter()
            .filter_map(|p| match p {
                Piece::Ref(name, _) => Some(name),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
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
            let v = lookup(s, name, off, scope, sources)?;
            charge(s, text_len(&v), scope)?;
            return Ok(v.into_owned());
        }
    }
    let mut out = String::with_capacity(s.v.len() + 32);
    for p in pieces {
        match p {
            Piece::Lit(l) => out.push_str(l),
            Piece::Dollar => out.push_str("${"),
            Piece::Ref(name, off) => {
                let v = lookup(s, name, off, scope, sources)?;
                if out.len().saturating_add(text_len(&v)) > MAX_VALUE_BYTES {
                    let at = inner_span(sources, s, off, name.len() + 3);
                    return Err(too_long(at, "this value would be longer than 1 MiB"));
                }
                v.push_to(&mut out);
            }
        }
    }
    if out.len() > MAX_VALUE_BYTES {
        return Err(too_long(s.span, "this value would be longer than 1 MiB"));
    }
    charge(s, out.len(), scope)?;
    Ok(Val::Text(out))
}

/// Length of a value's text form.
fn text_len(v: &Val) -> usize {
    match v {
        Val::Text(t) => t.len(),
        Val::List(l) => l
            .iter()
            .map(|x| x.len() + 1)
            .sum::<usize>()
            .saturating_sub(1),
    }
}

/// Count `n` bytes against the scope's budget.
fn charge(s: &Sp<String>, n: usize, scope: &dyn Scope) -> Result<(), Diag> {
    match scope.budget() {
        Some(b) if !b.charge(n) => Err(Diag::new(
                "mybake::resolve::too-large",
                format!(
                    "interpolation produces more than {} MiB in total",
                    MAX_TOTAL_BYTES >> 20
                ),
            )
            .label(s.span, "the budget runs out here")
            .help("variables and matrix values are copied into every value that uses them: use them in fewer places, or make them shorter")),
        _ => Ok(()),
    }
}

fn too_long(at: Span, label: &str) -> Diag {
    Diag::new(
        "mybake::resolve::too-large",
        format!(
            "interpolated value is longer than {} MiB",
            MAX_VALUE_BYTES >> 20
        ),
    )
    .label(at, label)
    .help("a value that doubles through variables (`${A}${A}`) grows exponentially")
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
            // The names are listed only while suggestions are affordable.
            let names = match scope.budget() {
                Some(b) if !b.may_suggest(1000) => Vec::new(),
                _ => scope.names(),
            };
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
    fn values_are_capped() {
        let big = Val::Text("x".repeat(MAX_VALUE_BYTES / 2 + 1));
        let s = M(HashMap::from([("B", big)]));
        let run = |t: &str| interpolate(&Sp::none(t.to_string()), &s, &Sources::default(), false);
        assert!(run("${B}").is_ok());
        let e = run("${B}${B}").unwrap_err();
        assert_eq!(e.code, "mybake::resolve::too-large");
        assert!(e.message.contains("longer than 1 MiB"), "{e:?}");
    }

    #[test]
    fn budget_runs_out() {
        let b = Budget::default();
        assert!(b.charge(MAX_TOTAL_BYTES));
        assert!(!b.charge(1));
    }

    #[test]
    fn inner_span_points_inside_literal() {
        let mut src = Sources::default();
        let f = src.add("f".into(), "/f".into(), "tags \"x:${TAG}\"".into());
        let lit = Sp::new("x:${TAG}".to_string(), Span::new(f, 5, 15));
        assert_eq!(inner_span(&src, &lit, 2, 6), Span::new(f, 8, 14));
    }
}
