//! `${NAME}` interpolation with `$${` as an escaped literal `${`. A plain
//! name keeps the fast path here; any other `${ EXPR }` is evaluated by
//! [`crate::expr`] (bake's HCL semantics).

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::Arc;

use crate::diag::{suggest, Diag};
use crate::expr::{self, ExprError, Globals};
use crate::source::{Sources, Sp, Span};

/// What a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Text(String),
    List(Vec<String>),
    /// A variable with no value, or an expression giving `null`: the entry
    /// holding exactly it is left out.
    Null,
    /// Key/value pairs (a `map` variable, a matrix `item`, an object).
    Map(Vec<(String, String)>),
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
            Val::Null => {}
            Val::Map(m) => {
                for (k, (key, v)) in m.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    out.push_str(key);
                    out.push('=');
                    out.push_str(v);
                }
            }
        }
    }

    /// The value as an expression sees it.
    pub fn to_hcl(&self) -> hcl::Value {
        match self {
            Val::Text(t) => hcl::Value::String(t.clone()),
            Val::List(l) => hcl::Value::Array(l.iter().map(|s| s.as_str().into()).collect()),
            Val::Null => hcl::Value::Null,
            Val::Map(m) => hcl::Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), hcl::Value::String(v.clone())))
                    .collect(),
            ),
        }
    }

    /// An expression's value: scalars as text, lists of scalars as lists,
    /// objects of scalars as maps (`Err`: what it is, when it is none of
    /// these).
    pub fn from_hcl(v: hcl::Value) -> Result<Val, String> {
        let text = |v: &hcl::Value| crate::expr::scalar_text(v);
        Ok(match v {
            hcl::Value::Null => Val::Null,
            hcl::Value::Array(items) => Val::List(
                items
                    .iter()
                    .filter(|v| !v.is_null())
                    .map(|v| {
                        text(v).ok_or_else(|| {
                            format!("a list holding a {}", crate::expr::type_name(v))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            hcl::Value::Object(m) => Val::Map(
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| {
                        text(v).map(|t| (k.clone(), t)).ok_or_else(|| {
                            format!("an object holding a {}", crate::expr::type_name(v))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => Val::Text(text(&other).unwrap_or_default()),
        })
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
    /// diagnostic explains why). A value the scope holds is lent, not
    /// copied.
    fn lookup(&self, name: &str, at: Span) -> Result<Option<Cow<'_, Val>>, Diag>;
    /// Names offered as suggestions for an unknown one.
    fn names(&self) -> Vec<String>;
    /// The run's budget, when interpolations are counted against one.
    fn budget(&self) -> Option<&Budget> {
        None
    }
    /// A name's value as an expression sees it (typed variables as bools
    /// and numbers); `None` when unknown or unusable.
    fn expr_value(&self, name: &str) -> Option<hcl::Value> {
        self.lookup(name, Span::NONE)
            .ok()
            .flatten()
            .map(|v| v.to_hcl())
    }
    /// The functions expressions may call (`None`: bake's library only).
    fn globals(&self) -> Option<&Arc<Globals>> {
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
    /// Any other expression: its text and the offset of its `${`.
    Expr(&'a str, usize),
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn parse(s: &str) -> Result<Vec<Piece<'_>>, (usize, ExprError)> {
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
            // The common case first: a plain name up to the next `}`.
            let simple = s[i + 2..]
                .find('}')
                .filter(|&c| is_name(&s[i + 2..i + 2 + c]));
            let close = match simple {
                Some(c) => i + 2 + c,
                None => expr::find_close(s, i).map_err(|e| (0, expr::scan_error(e, i)))?,
            };
            let inner = &s[i + 2..close];
            if is_name(inner) && !inner.contains('.') {
                out.push(Piece::Ref(inner, i));
            } else {
                out.push(Piece::Expr(inner, i));
            }
            i = close + 1;
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
/// interpolating it fails before any lookup), each with whether it comes
/// from an expression (where a token may also be a function parameter or
/// a `for` variable, so an unknown one is no error yet).
pub fn references(s: &str) -> Vec<(&str, bool)> {
    if is_plain(s) {
        return Vec::new();
    }
    match parse(s) {
        Ok(pieces) => pieces
            .into_iter()
            .flat_map(|p| match p {
                Piece::Ref(name, _) => vec![(name, false)],
                Piece::Expr(text, _) => expr::idents(text)
                    .into_iter()
                    .map(|(t, _)| (t, true))
                    .collect(),
                _ => Vec::new(),
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

/// Interpolate `s`. When `allow_list` and `s` is exactly one `${…}` giving
/// a list, the list is returned as is. A string that is exactly one
/// `${…}` giving null is [`Val::Null`] (the caller leaves the entry out),
/// one giving an object is a [`Val::Map`]; null inside a longer string is
/// an error.
pub fn interpolate(
    s: &Sp<String>,
    scope: &dyn Scope,
    sources: &Sources,
    allow_list: bool,
) -> Result<Val, Diag> {
    if is_plain(&s.v) {
        return Ok(Val::Text(s.v.clone()));
    }
    let pieces = parse(&s.v).map_err(|(base, e)| expr_diag(s, sources, base, e))?;
    if pieces.len() == 1 {
        let v = match pieces[0] {
            Piece::Ref(name, off) => Some(lookup(s, name, off, scope, sources)?),
            Piece::Expr(text, off) => Some(Cow::Owned(eval_expr(s, text, off, scope, sources)?)),
            _ => None,
        };
        if let Some(v) = v {
            charge(s, text_len(&v), scope)?;
            return Ok(match v.into_owned() {
                Val::List(l) if !allow_list => Val::Text(Val::List(l).into_text()),
                v => v,
            });
        }
    }
    let mut out = String::with_capacity(s.v.len() + 32);
    for p in pieces {
        let (v, name, off) = match p {
            Piece::Lit(l) => {
                out.push_str(l);
                continue;
            }
            Piece::Dollar => {
                out.push_str("${");
                continue;
            }
            Piece::Ref(name, off) => (lookup(s, name, off, scope, sources)?, name, off),
            Piece::Expr(text, off) => {
                let v = eval_expr(s, text, off, scope, sources)?;
                if matches!(v, Val::Map(_)) {
                    return Err(Diag::new(
                        "mybake::resolve::wrong-type",
                        format!(
                            "`{}` is an object and cannot be part of a longer string",
                            text.trim()
                        ),
                    )
                    .label(inner_span(sources, s, off, text.len() + 3), "an object"));
                }
                (Cow::Owned(v), text, off)
            }
        };
        if matches!(*v, Val::Null) {
            return Err(Diag::new(
                "mybake::resolve::null-in-string",
                format!("`{}` is null and cannot be part of a longer string", name.trim()),
            )
            .label(inner_span(sources, s, off, name.len() + 3), "null here")
            .help("a null value can only stand alone (`\"${X}\"`), which leaves the entry out; give the variable a value or a default"));
        }
        if out.len().saturating_add(text_len(&v)) > MAX_VALUE_BYTES {
            let at = inner_span(sources, s, off, name.len() + 3);
            return Err(too_long(at, "this value would be longer than 1 MiB"));
        }
        v.push_to(&mut out);
    }
    if out.len() > MAX_VALUE_BYTES {
        return Err(too_long(s.span, "this value would be longer than 1 MiB"));
    }
    charge(s, out.len(), scope)?;
    Ok(Val::Text(out))
}

/// [`interpolate`] where only text will do (names, `inherits`): null is an
/// error pointing at the string.
pub fn interpolate_text(
    s: &Sp<String>,
    scope: &dyn Scope,
    sources: &Sources,
) -> Result<String, Diag> {
    match interpolate(s, scope, sources, false)? {
        Val::Null => Err(Diag::new(
            "mybake::resolve::null-value",
            "this value is null where text is needed",
        )
        .label(s.span, "null")
        .help("give the variable a value or a default")),
        v => Ok(v.into_text()),
    }
}

/// The diagnostic of an expression error at `base` + its offset in `s`.
fn expr_diag(s: &Sp<String>, sources: &Sources, base: usize, e: ExprError) -> Diag {
    Diag::new(e.code, e.message)
        .label(
            inner_span(sources, s, base + e.offset, e.len.max(1)),
            e.label,
        )
        .help_opt(e.help)
}

/// Evaluate the expression `text` whose `${` is at `off` in `s`.
fn eval_expr(
    s: &Sp<String>,
    text: &str,
    off: usize,
    scope: &dyn Scope,
    sources: &Sources,
) -> Result<Val, Diag> {
    // A dotted name a scope knows as is (a matrix axis written `a.b`).
    if is_name(text) {
        if let Ok(Some(v)) = scope.lookup(text, Span::NONE) {
            return Ok(v.into_owned());
        }
    }
    let default_globals;
    let g = match scope.globals() {
        Some(g) => g,
        None => {
            default_globals = Arc::new(Globals::default());
            &default_globals
        }
    };
    let lookup = |name: &str| scope.expr_value(name);
    let names = || match scope.budget() {
        Some(b) if !b.may_suggest(1000) => Vec::new(),
        _ => scope.names(),
    };
    let v = expr::eval(text, g, &lookup, &names).map_err(|e| expr_diag(s, sources, off + 2, e))?;
    Val::from_hcl(v).map_err(|what| {
        Diag::new(
            "mybake::resolve::wrong-type",
            format!("`{}` is {what}, which has no text form", text.trim()),
        )
        .label(
            inner_span(sources, s, off, text.len() + 3),
            "this expression",
        )
    })
}

/// Length of a value's text form.
fn text_len(v: &Val) -> usize {
    match v {
        Val::Text(t) => t.len(),
        Val::Null => 0,
        Val::Map(m) => m.iter().map(|(k, v)| k.len() + v.len() + 2).sum(),
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
    fn expressions_take_their_type() {
        let s = M(HashMap::from([
            ("TAG", Val::Text("dev".into())),
            ("N", Val::Null),
            ("P", Val::List(vec!["a".into(), "b".into()])),
            ("M", Val::Map(vec![("k".into(), "v".into())])),
        ]));
        let run = |t: &str, list: bool| {
            interpolate(&Sp::none(t.to_string()), &s, &Sources::default(), list)
        };
        assert_eq!(run("${N}", false).unwrap(), Val::Null);
        assert_eq!(run("${ N }", false).unwrap(), Val::Null);
        let e = run("x-${N}", false).unwrap_err();
        assert_eq!(e.code, "mybake::resolve::null-in-string");
        assert_eq!(
            run("${[for x in P : \"${x}!\"]}", true).unwrap(),
            Val::List(vec!["a!".into(), "b!".into()])
        );
        assert_eq!(
            run("${M.k}-${1 + 2}", false).unwrap(),
            Val::Text("v-3".into())
        );
        assert_eq!(
            run("${M}", false).unwrap(),
            Val::Map(vec![("k".into(), "v".into())])
        );
        assert_eq!(
            run("${TAG == \"dev\"}", false).unwrap(),
            Val::Text("true".into())
        );
        assert_eq!(
            run("$${x} ${upper(TAG)}", false).unwrap(),
            Val::Text("${x} DEV".into())
        );
        let e = run("${upper(TGA)}", false).unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `TAG`?"));
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
