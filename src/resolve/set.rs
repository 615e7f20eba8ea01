//! `--set PATTERN.ATTR[.KEY](=|+=)VALUE` overrides with `docker buildx
//! bake`'s semantics (bake 0.13.1's `newOverrides`/`AddOverrides`).
//!
//! - Both name sets: mybake's node names (`platforms`, `arg.K`, `label.K`,
//!   `annotation.K`, `stage`, `secret`, ...) and bake's (`platform`,
//!   `args.K`, `labels.K`, `annotations`, `target`, `secrets`, ...).
//! - Applied to each target as declared, before the targets inheriting it
//!   see it (bake applies a target's overrides right after merging its
//!   own parents): `--set _common.args.X=1` reaches every target that
//!   inherits `_common` and does not set `X` itself.
//! - For a list attribute, the first `--set` of a target replaces the
//!   value and every later one appends (bake collects repeated flags);
//!   `+=` always appends; `annotations` and `attest` always append, as
//!   bake does. Values already in the list are not repeated (bake's
//!   normalisation), and an `attest` of a type already there replaces it.
//! - A value is one list item: commas split only `platforms` (bake splits
//!   a platform value at build time), so `x.tags=a:1,b:2` is one tag.
//! - `PATTERN.args.KEY` with no `=` takes the value of the environment
//!   variable `KEY` (left out when it is unset), as bake does.

use std::collections::HashMap;
use std::path::Path;

use globset::{Glob, GlobMatcher};

use crate::attrs::{self, Shape, A, ATTRS};
use crate::diag::{suggest, Diag, Diagnostics};
use crate::source::{FileId, Sources, Sp, Span};
use crate::value::{Attrs, Entry, EntryMap, Obj, Value};

/// bake's `--set` names that differ from mybake's node names.
pub const BAKE_NAMES: &[(&str, A)] = &[
    ("platform", A::Platforms),
    ("args", A::Arg),
    ("labels", A::Label),
    ("annotations", A::Annotation),
    ("target", A::Stage),
    ("secrets", A::Secret),
];

/// bake's `--set` names mybake has no attribute for, with what to do
/// instead.
const BAKE_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "push",
        "use `mybake build --push`, or `PATTERN.output=type=registry`",
    ),
    ("shm-size", "mybake has no `shm-size` attribute"),
    ("ulimits", "mybake has no `ulimits` attribute"),
];

/// Every attribute name `--set` accepts (for did-you-mean).
pub fn names() -> impl Iterator<Item = &'static str> {
    ATTRS
        .iter()
        .map(|a| a.name)
        .chain(BAKE_NAMES.iter().map(|(n, _)| *n))
}

/// The attribute `--set` name `name` stands for.
pub fn attr_by_name(name: &str) -> Option<usize> {
    attrs::by_name(name).or_else(|| {
        BAKE_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| a.index())
    })
}

/// What one `--set` does to the target's value.
#[derive(Debug, Clone)]
enum Payload {
    /// `Str`/`Bool`: the new value.
    Str(Sp<String>),
    /// `List`/`CsvList` items.
    Items(Vec<Sp<String>>),
    /// A key/value entry.
    Entry(String, Sp<String>),
    /// A `Typed`/`Props` object.
    Object(Obj),
    /// `args.KEY` with no `=` and no such environment variable: nothing.
    Nothing,
}

#[derive(Debug, Clone)]
pub struct SetOverride {
    pub pattern: String,
    matcher: GlobMatcher,
    pub attr: usize,
    pub key: Option<String>,
    /// `+=`: append to the value, never replace it.
    pub append: bool,
    pub value: Sp<String>,
    payload: Payload,
    /// Span of the whole flag.
    pub span: Span,
    pub pattern_span: Span,
}

impl SetOverride {
    /// Whether the override applies to target `name`: the name itself, or
    /// a glob matching it (bake's `expandTargets`).
    pub fn matches(&self, name: &str) -> bool {
        self.pattern == name || self.matcher.is_match(name)
    }
}

/// Parse every `--set` flag. The flags are registered as a pseudo-file
/// `--set` so errors point into them; `env` is read for `args.KEY` with
/// no value.
pub fn parse(
    flags: &[String],
    sources: &mut Sources,
    cwd: &Path,
    env: &HashMap<String, String>,
    diags: &mut Diagnostics,
) -> Vec<SetOverride> {
    if flags.is_empty() {
        return Vec::new();
    }
    let mut text = String::new();
    let mut offsets = Vec::new();
    for f in flags {
        offsets.push(text.len());
        text.push_str(f);
        text.push('\n');
    }
    let file = sources.add_virtual("--set".into(), text, cwd.to_path_buf());
    flags
        .iter()
        .zip(offsets)
        .filter_map(|(f, off)| parse_one(f, file, off, env, diags))
        .collect()
}

fn parse_one(
    flag: &str,
    file: FileId,
    off: usize,
    env: &HashMap<String, String>,
    diags: &mut Diagnostics,
) -> Option<SetOverride> {
    let whole = Span::new(file, off, off + flag.len());
    let eq = flag.find('=');
    let lhs_end = eq.unwrap_or(flag.len());
    let (lhs, append) = if flag[..lhs_end].ends_with('+') {
        (&flag[..lhs_end - 1], true)
    } else {
        (&flag[..lhs_end], false)
    };
    // PATTERN may itself contain dots: take the first split whose
    // remainder starts with a known attribute.
    let mut found = None;
    for (i, _) in lhs.match_indices('.') {
        let rest = &lhs[i + 1..];
        let (attr, key) = match rest.find('.') {
            Some(j) => (&rest[..j], Some(&rest[j + 1..])),
            None => (rest, None),
        };
        if let Some(a) = attr_by_name(attr) {
            found = Some((&lhs[..i], a, attr, key, i));
            break;
        }
    }
    let Some((pattern, a, used_name, key, dot)) = found else {
        // The attribute is the part after the pattern (the first dot).
        let attr = match lhs.split_once('.') {
            Some((_, rest)) => rest.split('.').next().unwrap_or(rest),
            None => "",
        };
        if attr.is_empty() {
            let why = if eq.is_none() {
                "no `=`"
            } else {
                "no attribute"
            };
            diags.push(
                Diag::new(
                    "mybake::set::syntax",
                    format!("--set {flag}: expected PATTERN.ATTRIBUTE=VALUE"),
                )
                .label(whole, why),
            );
            return None;
        }
        let start = lhs.find('.').map_or(0, |d| d + 1);
        let at = Span::new(file, off + start, off + start + attr.len());
        let mut d = Diag::new(
            "mybake::set::unknown-attribute",
            format!("--set {flag}: `{attr}` is not a target attribute"),
        )
        .label(at, "unknown attribute");
        let unsupported = BAKE_UNSUPPORTED.iter().find(|(n, _)| *n == attr);
        d = d.help_opt(
            unsupported
                .map(|(_, h)| h.to_string())
                .or_else(|| suggest(attr, names()))
                .or_else(|| {
                    Some(
                        "the form is PATTERN.ATTRIBUTE=VALUE, e.g. `*.platforms=linux/arm64`"
                            .into(),
                    )
                }),
        );
        diags.push(d);
        return None;
    };
    let pattern_span = Span::new(file, off, off + dot);
    let def = &ATTRS[a];
    let keyed = matches!(def.shape, Shape::KeyValue | Shape::ChildMap);
    // bake's `annotations=KEY=VALUE` names the key in the value.
    let key_in_value = a == A::Annotation.index() && key.is_none();
    let key_ok = match (keyed, key) {
        (true, Some(k)) => !k.is_empty(),
        (true, None) => key_in_value,
        (false, None) => true,
        (false, Some(_)) => false,
    };
    if !key_ok {
        let msg = if keyed {
            format!("--set {flag}: `{used_name}` needs a key: PATTERN.{used_name}.KEY=VALUE")
        } else {
            format!("--set {flag}: `{used_name}` takes no key")
        };
        diags.push(Diag::new("mybake::set::syntax", msg).label(whole, "here"));
        return None;
    }
    let value_span = Span::new(
        file,
        off + eq.map_or(flag.len(), |e| e + 1),
        off + flag.len(),
    );
    let value: Option<Sp<String>> = match eq {
        Some(e) => Some(Sp::new(flag[e + 1..].to_string(), value_span)),
        // bake: `args.KEY` alone takes the environment's `KEY`.
        None if a == A::Arg.index() => env
            .get(key.unwrap_or_default())
            .map(|v| Sp::new(v.clone(), whole)),
        None => {
            diags.push(
                Diag::new(
                    "mybake::set::syntax",
                    format!("--set {flag}: expected PATTERN.ATTRIBUTE=VALUE"),
                )
                .label(whole, "no `=`"),
            );
            return None;
        }
    };
    if append
        && !matches!(
            def.shape,
            Shape::List | Shape::CsvList | Shape::Typed | Shape::Props
        )
    {
        diags.push(
            Diag::new(
                "mybake::set::syntax",
                format!("--set {flag}: `+=` appends to lists; `{used_name}` is not a list"),
            )
            .label(whole, "use `=`"),
        );
        return None;
    }
    let matcher = match Glob::new(pattern) {
        Ok(g) if !pattern.is_empty() => g.compile_matcher(),
        _ => {
            diags.push(
                Diag::new(
                    "mybake::set::pattern",
                    format!("--set {flag}: invalid target pattern `{pattern}`"),
                )
                .label(pattern_span, "invalid pattern"),
            );
            return None;
        }
    };
    let payload = match &value {
        None => Payload::Nothing,
        Some(v) => payload(a, key, v, diags)?,
    };
    Some(SetOverride {
        pattern: pattern.to_string(),
        matcher,
        attr: a,
        key: key.map(String::from),
        append,
        value: value.unwrap_or_else(|| Sp::new(String::new(), whole)),
        payload,
        span: whole,
        pattern_span,
    })
}

/// The value of one flag, checked and split as bake reads it.
fn payload(
    a: usize,
    key: Option<&str>,
    v: &Sp<String>,
    diags: &mut Diagnostics,
) -> Option<Payload> {
    let def = &ATTRS[a];
    Some(match def.shape {
        Shape::Str => Payload::Str(v.clone()),
        // bake's `strconv.ParseBool`; anything else is reported, located,
        // by the boolean check of resolve.
        Shape::Bool => Payload::Str(Sp::new(
            match v.v.as_str() {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => "true".to_string(),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => "false".to_string(),
                other => other.to_string(),
            },
            v.span,
        )),
        // Only a platform value is split on commas (bake splits it when it
        // parses platforms); any other value is one item.
        Shape::List if a == A::Platforms.index() => Payload::Items(
            v.v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Sp::new(s.to_string(), v.span))
                .collect(),
        ),
        Shape::List | Shape::CsvList => Payload::Items(if v.v.is_empty() {
            Vec::new()
        } else {
            vec![v.clone()]
        }),
        Shape::KeyValue | Shape::ChildMap => match key {
            Some(k) => Payload::Entry(k.to_string(), v.clone()),
            None => match v.v.split_once('=') {
                Some((k, val)) if !k.is_empty() => {
                    Payload::Entry(k.to_string(), Sp::new(val.to_string(), v.span))
                }
                _ => {
                    diags.push(
                        Diag::new("mybake::set::syntax", format!("`{}` is not KEY=VALUE", v.v))
                            .label(v.span, "expected KEY=VALUE"),
                    );
                    return None;
                }
            },
        },
        Shape::Typed | Shape::Props => {
            Payload::Object(csv_object(v, def.shape == Shape::Typed, diags)?)
        }
    })
}

/// Apply every override matching target `name`, in command-line order, to
/// the target's attributes as declared (its parents' merged in).
pub fn apply_all(sets: &[SetOverride], name: &str, attrs: &mut Attrs) {
    // Attributes this run's flags have set on this target already: a
    // later flag for them appends (bake collects repeated flags).
    let mut touched = 0u64;
    for o in sets.iter().filter(|o| o.matches(name)) {
        let again = touched & (1 << o.attr) != 0;
        touched |= 1 << o.attr;
        apply(o, again, attrs);
    }
}

/// Apply one override; `again`: an earlier flag of the run set the same
/// attribute of this target.
fn apply(o: &SetOverride, again: bool, attrs: &mut Attrs) {
    let a = o.attr;
    // bake appends annotations and attestations to the declared ones.
    let append = o.append || again || a == A::Attest.index() || a == A::Annotation.index();
    match &o.payload {
        Payload::Nothing => {}
        Payload::Str(s) => attrs.set(a, Value::Str(s.clone())),
        Payload::Items(items) => match attrs.get_mut(a) {
            Some(Value::List(l)) if append => {
                for it in items {
                    if !l.iter().any(|x| x.v == it.v) {
                        l.push(it.clone());
                    }
                }
            }
            _ => {
                let mut l: Vec<Sp<String>> = Vec::with_capacity(items.len());
                for it in items {
                    if !l.iter().any(|x| x.v == it.v) {
                        l.push(it.clone());
                    }
                }
                attrs.set(a, Value::List(l));
            }
        },
        Payload::Entry(k, v) => {
            let entry = Entry {
                key_span: o.span,
                value: v.clone(),
            };
            match attrs.get_mut(a) {
                Some(Value::Map(m)) => {
                    m.insert(k.clone(), entry);
                }
                _ => attrs.set(a, Value::Map(EntryMap::from([(k.clone(), entry)]))),
            }
        }
        Payload::Object(obj) => match attrs.get_mut(a) {
            Some(Value::Objects(l)) if append => {
                let ty = |o: &Obj| o.get("type").map(|t| t.v.clone());
                if a == A::Attest.index() {
                    // An attestation of a type already there replaces it.
                    if let Some(i) = l.iter().position(|x| ty(x) == ty(obj)) {
                        l[i] = obj.clone();
                        return;
                    }
                }
                let same = |x: &Obj| {
                    x.fields.len() == obj.fields.len()
                        && x.fields
                            .iter()
                            .zip(&obj.fields)
                            .all(|((k, v), (k2, v2))| k == k2 && v.v == v2.v)
                };
                if !l.iter().any(same) {
                    l.push(obj.clone());
                }
            }
            _ => attrs.set(a, Value::Objects(vec![obj.clone()])),
        },
    }
}

/// `type=local,dest=out` → object (values keep the flag's span).
pub fn csv_object(v: &Sp<String>, typed: bool, diags: &mut Diagnostics) -> Option<Obj> {
    let mut fields = Vec::new();
    for part in v.v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, val)) => fields.push((
                k.trim().to_string(),
                Sp::new(val.trim().to_string(), v.span),
            )),
            None if typed && fields.is_empty() => {
                fields.push(("type".to_string(), Sp::new(part.to_string(), v.span)))
            }
            None => {
                diags.push(
                    Diag::new("mybake::set::syntax", format!("`{part}` is not key=value"))
                        .label(v.span, "in this value"),
                );
                return None;
            }
        }
    }
    if typed && !fields.iter().any(|(k, _)| k == "type") {
        diags.push(
            Diag::new("mybake::set::syntax", "expected `type=…`".to_string())
                .label(v.span, "no type"),
        );
        return None;
    }
    if let Some(i) = fields.iter().position(|(k, _)| k == "type") {
        let t = fields.remove(i);
        fields.insert(0, t);
    }
    Some(Obj {
        span: v.span,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(flags: &[&str], env: &[(&str, &str)]) -> (Vec<SetOverride>, Diagnostics) {
        let mut src = Sources::default();
        let mut d = Diagnostics::default();
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let v = parse(&flags, &mut src, Path::new("/w"), &env, &mut d);
        (v, d)
    }

    fn one(flag: &str) -> (Option<SetOverride>, Diagnostics) {
        let (mut v, d) = parse_all(&[flag], &[]);
        (v.pop(), d)
    }

    /// `attrs` after the flags, applied to target `name`.
    fn applied(attrs: &mut Attrs, name: &str, flags: &[&str]) {
        let (sets, d) = parse_all(flags, &[]);
        assert!(d.is_empty(), "{d:?}");
        apply_all(&sets, name, attrs);
    }

    fn list(attrs: &Attrs, a: A) -> Vec<String> {
        attrs
            .get(a.index())
            .and_then(Value::as_list)
            .unwrap_or(&[])
            .iter()
            .map(|s| s.v.clone())
            .collect()
    }

    #[test]
    fn parses_forms() {
        let (o, _) = one("*.platforms=linux/arm64");
        let o = o.unwrap();
        assert_eq!(
            (o.pattern.as_str(), o.attr, o.append),
            ("*", A::Platforms.index(), false)
        );
        let o = one("svc-*.tags+=x:1").0.unwrap();
        assert!(o.append && o.matches("svc-api") && !o.matches("base"));
        let o = one("api.arg.GO_VERSION=1.22").0.unwrap();
        assert_eq!(o.key.as_deref(), Some("GO_VERSION"));
        let o = one("my.app.context=dir").0.unwrap();
        assert_eq!(o.pattern, "my.app");
    }

    #[test]
    fn bake_names_are_mybake_attributes() {
        for (flag, a) in [
            ("x.platform=linux/arm64", A::Platforms),
            ("x.args.K=v", A::Arg),
            ("x.labels.K=v", A::Label),
            ("x.annotations=index:k=v", A::Annotation),
            ("x.target=release", A::Stage),
            ("x.secrets=id=s,env=S", A::Secret),
            ("x.contexts.base=target:b", A::Contexts),
            ("x.no-cache=1", A::NoCache),
            ("x.no-cache-filter=deps", A::NoCacheFilter),
        ] {
            let (o, d) = one(flag);
            assert!(d.is_empty(), "{flag}: {d:?}");
            assert_eq!(o.unwrap().attr, a.index(), "{flag}");
        }
        // A key may hold dots (bake splits the flag in three at most).
        assert_eq!(one("x.args.a.b=1").0.unwrap().key.as_deref(), Some("a.b"));
    }

    #[test]
    fn rejects_bad_forms() {
        assert_eq!(
            one("api.platfroms=x").1.items[0].help.as_deref(),
            Some("did you mean `platforms`?")
        );
        // bake's names are suggested too, and the attribute is located.
        let d = one("api.lables.X=1").1;
        assert_eq!(d.items[0].help.as_deref(), Some("did you mean `labels`?"));
        assert!(d.items[0].message.contains("`lables` is not"), "{d:?}");
        assert!(one("api.push=true").1.items[0]
            .help
            .as_deref()
            .unwrap()
            .contains("--push"));
        assert!(one("api.arg=x").1.items[0].message.contains("needs a key"));
        assert!(one("api.args=x").1.items[0]
            .message
            .contains("`args` needs a key"));
        assert!(one("api.annotations=novalue").1.items[0]
            .message
            .contains("KEY=VALUE"));
        assert!(one("api.context+=x").1.items[0]
            .message
            .contains("appends to lists"));
        assert!(one("api.context").1.items[0]
            .message
            .contains("expected PATTERN"));
        assert!(one("api=x").1.items[0].message.contains("expected PATTERN"));
        assert!(one("api.=x").1.items[0]
            .message
            .contains("expected PATTERN"));
        assert!(one("api.output=dest=x").1.items[0]
            .message
            .contains("type="));
    }

    #[test]
    fn repeated_flags_append_and_values_are_not_split() {
        let mut attrs = Attrs::new();
        applied(&mut attrs, "a", &["a.tags=old"]);
        applied(
            &mut attrs,
            "a",
            &["a.tags=x:1,y:2", "*.tags=z", "a.tags=z", "b.tags=no"],
        );
        // The first flag replaced the declared `old`; `a.tags=x:1,y:2` is one tag.
        assert_eq!(list(&attrs, A::Tags), ["x:1,y:2", "z"]);
        applied(&mut attrs, "a", &["a.tags+=w"]);
        assert_eq!(list(&attrs, A::Tags), ["x:1,y:2", "z", "w"]);
        // Platforms split on commas (as bake parses them), and repeat.
        applied(
            &mut attrs,
            "a",
            &[
                "a.platform=linux/amd64,linux/arm64",
                "a.platforms=linux/arm64,linux/arm/v7",
            ],
        );
        assert_eq!(
            list(&attrs, A::Platforms),
            ["linux/amd64", "linux/arm64", "linux/arm/v7"]
        );
    }

    #[test]
    fn maps_objects_and_attestations() {
        let mut attrs = Attrs::new();
        applied(
            &mut attrs,
            "a",
            &[
                "a.args.X=1",
                "a.arg.Y=2",
                "a.annotations=index:k=v=w",
                "a.output=type=local,dest=out",
                "a.output=type=tar,dest=o.tar",
                "a.cache-from=type=registry,ref=r",
                "a.attest=type=sbom",
                "a.attest=type=provenance,mode=min",
                "a.attest=type=provenance,mode=max",
                "a.no-cache=True",
            ],
        );
        let args = attrs.get(A::Arg.index()).unwrap().as_map().unwrap();
        assert_eq!(
            (args.get("X").unwrap().value.v.as_str(), args.len()),
            ("1", 2)
        );
        let ann = attrs.get(A::Annotation.index()).unwrap().as_map().unwrap();
        assert_eq!(ann.get("index:k").unwrap().value.v, "v=w");
        let outs = attrs.get(A::Output.index()).unwrap().as_objects().unwrap();
        assert_eq!(outs.len(), 2);
        assert_eq!(outs[0].get("dest").unwrap().v, "out");
        assert_eq!(list(&attrs, A::CacheFrom), ["type=registry,ref=r"]);
        let att = attrs.get(A::Attest.index()).unwrap().as_objects().unwrap();
        assert_eq!(att.len(), 2);
        assert_eq!(att[1].get("mode").unwrap().v, "max");
        assert_eq!(
            attrs.get(A::NoCache.index()).unwrap().as_str().unwrap().v,
            "true"
        );
    }

    #[test]
    fn args_without_value_read_the_environment() {
        let (v, d) = parse_all(&["a.args.FOO", "a.args.UNSET"], &[("FOO", "bar")]);
        assert!(d.is_empty());
        let mut attrs = Attrs::new();
        apply_all(&v, "a", &mut attrs);
        let args = attrs.get(A::Arg.index()).unwrap().as_map().unwrap();
        assert_eq!(args.get("FOO").unwrap().value.v, "bar");
        assert!(args.get("UNSET").is_none());
    }
}
