//! `--set PATTERN.ATTR[.KEY](=|+=)VALUE` overrides, applied to every
//! concrete target whose name matches PATTERN after files are merged.

use std::path::Path;

use globset::{Glob, GlobMatcher};

use crate::attrs::{self, Shape, ATTRS};
use crate::diag::{suggest, Diag, Diagnostics};
use crate::source::{FileId, Sources, Sp, Span};
use crate::value::{Attrs, Entry, EntryMap, Obj, Value};

#[derive(Debug, Clone)]
pub struct SetOverride {
    pub pattern: String,
    matcher: GlobMatcher,
    pub attr: usize,
    pub key: Option<String>,
    pub append: bool,
    pub value: Sp<String>,
    /// Span of the whole flag.
    pub span: Span,
    pub pattern_span: Span,
}

impl SetOverride {
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.is_match(name)
    }
}

/// Parse every `--set` flag. The flags are registered as a pseudo-file
/// `--set` so errors point into them.
pub fn parse(
    flags: &[String],
    sources: &mut Sources,
    cwd: &Path,
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
        .filter_map(|(f, off)| parse_one(f, file, off, diags))
        .collect()
}

fn parse_one(flag: &str, file: FileId, off: usize, diags: &mut Diagnostics) -> Option<SetOverride> {
    let whole = Span::new(file, off, off + flag.len());
    let Some(eq) = flag.find('=') else {
        diags.push(
            Diag::new(
                "mybake::set::syntax",
                format!("--set {flag}: expected PATTERN.ATTRIBUTE=VALUE"),
            )
            .label(whole, "no `=`"),
        );
        return None;
    };
    let (lhs, append) = if flag[..eq].ends_with('+') {
        (&flag[..eq - 1], true)
    } else {
        (&flag[..eq], false)
    };
    let value = &flag[eq + 1..];
    // PATTERN may itself contain dots: take the first split whose
    // remainder starts with a known attribute.
    let mut found = None;
    for (i, _) in lhs.match_indices('.') {
        let rest = &lhs[i + 1..];
        let (attr, key) = match rest.find('.') {
            Some(j) => (&rest[..j], Some(&rest[j + 1..])),
            None => (rest, None),
        };
        if let Some(a) = attrs::by_name(attr) {
            found = Some((&lhs[..i], a, key, i));
            break;
        }
    }
    let Some((pattern, a, key, dot)) = found else {
        let attr = lhs.rsplit('.').next().unwrap_or(lhs);
        let at = Span::new(file, off + lhs.len() - attr.len(), off + lhs.len());
        let mut d = Diag::new(
            "mybake::set::unknown-attribute",
            format!("--set {flag}: `{attr}` is not a target attribute"),
        )
        .label(at, "unknown attribute");
        d = d.help_opt(suggest(attr, ATTRS.iter().map(|a| a.name)).or_else(|| {
            Some("the form is PATTERN.ATTRIBUTE=VALUE, e.g. `*.platforms=linux/arm64`".into())
        }));
        diags.push(d);
        return None;
    };
    let pattern_span = Span::new(file, off, off + dot);
    let def = &ATTRS[a];
    let needs_key = matches!(def.shape, Shape::KeyValue | Shape::ChildMap);
    let key_ok = match (needs_key, key) {
        (true, Some(k)) if !k.is_empty() => true,
        (false, None) => true,
        _ => false,
    };
    if !key_ok {
        let msg = if needs_key {
            format!(
                "--set {flag}: `{}` needs a key: PATTERN.{}.KEY=VALUE",
                def.name, def.name
            )
        } else {
            format!("--set {flag}: `{}` takes no key", def.name)
        };
        diags.push(Diag::new("mybake::set::syntax", msg).label(whole, "here"));
        return None;
    }
    if append
        && !matches!(
            def.shape,
            Shape::List | Shape::CsvList | Shape::Typed | Shape::Props
        )
    {
        diags.push(
            Diag::new(
                "mybake::set::syntax",
                format!(
                    "--set {flag}: `+=` appends to lists; `{}` is not a list",
                    def.name
                ),
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
    Some(SetOverride {
        pattern: pattern.to_string(),
        matcher,
        attr: a,
        key: key.map(String::from),
        append,
        value: Sp::new(
            value.to_string(),
            Span::new(file, off + eq + 1, off + flag.len()),
        ),
        span: whole,
        pattern_span,
    })
}

/// Apply one override to a target's attributes.
pub fn apply(o: &SetOverride, attrs: &mut Attrs, diags: &mut Diagnostics) {
    let def = &ATTRS[o.attr];
    let slot = attrs.get_mut(o.attr);
    let value = match def.shape {
        Shape::Str | Shape::Bool => Value::Str(o.value.clone()),
        Shape::List | Shape::CsvList => {
            let items: Vec<Sp<String>> = if def.shape == Shape::CsvList {
                vec![o.value.clone()]
            } else {
                o.value
                    .v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Sp::new(s.to_string(), o.value.span))
                    .collect()
            };
            match (o.append, slot) {
                (true, Some(Value::List(l))) => return l.extend(items),
                _ => Value::List(items),
            }
        }
        Shape::KeyValue | Shape::ChildMap => {
            let key = o.key.clone().unwrap_or_default();
            let entry = Entry {
                key_span: o.span,
                value: o.value.clone(),
            };
            match slot {
                Some(Value::Map(m)) => {
                    m.insert(key, entry);
                    return;
                }
                _ => Value::Map(EntryMap::from([(key, entry)])),
            }
        }
        Shape::Typed | Shape::Props => {
            let Some(obj) = csv_object(&o.value, def.shape == Shape::Typed, diags) else {
                return;
            };
            match (o.append, slot) {
                (true, Some(Value::Objects(l))) => return l.push(obj),
                _ => Value::Objects(vec![obj]),
            }
        }
    };
    attrs.set(o.attr, value);
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
    use crate::attrs::A;

    fn one(flag: &str) -> (Option<SetOverride>, Diagnostics) {
        let mut src = Sources::default();
        let mut d = Diagnostics::default();
        let mut v = parse(&[flag.to_string()], &mut src, Path::new("/w"), &mut d);
        (v.pop(), d)
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
    fn rejects_bad_forms() {
        assert_eq!(
            one("api.platfroms=x").1.items[0].help.as_deref(),
            Some("did you mean `platforms`?")
        );
        assert!(one("api.arg=x").1.items[0].message.contains("needs a key"));
        assert!(one("api.context+=x").1.items[0]
            .message
            .contains("appends to lists"));
        assert!(one("api.context").1.items[0]
            .message
            .contains("expected PATTERN"));
    }

    #[test]
    fn applies_lists_maps_objects() {
        let mut attrs = Attrs::new();
        let mut d = Diagnostics::default();
        apply(&one("a.tags=x,y").0.unwrap(), &mut attrs, &mut d);
        apply(&one("a.tags+=z").0.unwrap(), &mut attrs, &mut d);
        assert_eq!(
            attrs.get(A::Tags.index()).unwrap().as_list().unwrap().len(),
            3
        );
        apply(
            &one("a.output=type=local,dest=out").0.unwrap(),
            &mut attrs,
            &mut d,
        );
        let o = &attrs.get(A::Output.index()).unwrap().as_objects().unwrap()[0];
        assert_eq!(o.get("dest").unwrap().v, "out");
        apply(
            &one("a.cache-from=type=registry,ref=r").0.unwrap(),
            &mut attrs,
            &mut d,
        );
        assert_eq!(
            attrs
                .get(A::CacheFrom.index())
                .unwrap()
                .as_list()
                .unwrap()
                .len(),
            1
        );
        assert!(d.is_empty());
    }
}
