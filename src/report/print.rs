//! `mybake print`: the resolved configuration as bake-shaped JSON.

use std::path::Path;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value as J};

use super::relative;
use crate::attrs::{Paths, Shape, A, ATTRS};
use crate::resolve::{Resolved, Selection, Target};
use crate::source::Sp;
use crate::value::{EntryMap, Obj, Value};

/// The whole document (stable: same input, same bytes).
///
/// Streamed through serde_json's pretty serializer: each target's JSON is
/// built, written and dropped in turn, so memory does not grow with a tree
/// of the whole document (the bytes are what serializing the whole tree
/// gives).
pub fn print(r: &Resolved, sel: &Selection) -> String {
    let doc = Doc { r, sel };
    // About 500 bytes per target in practice: one allocation, no regrowth.
    let mut out = Vec::with_capacity(4096 + sel.all.len() * 512);
    let mut ser = serde_json::Serializer::pretty(&mut out);
    if doc.serialize(&mut ser).is_err() {
        return String::new();
    }
    out.push(b'\n');
    String::from_utf8(out).unwrap_or_default()
}

struct Doc<'a> {
    r: &'a Resolved,
    sel: &'a Selection,
}

struct Groups<'a>(&'a Doc<'a>);
struct Targets<'a>(&'a Doc<'a>);

impl Serialize for Doc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if !self.sel.groups.is_empty() {
            m.serialize_entry("group", &Groups(self))?;
        }
        m.serialize_entry("target", &Targets(self))?;
        m.end()
    }
}

impl Serialize for Groups<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Doc { r, sel } = self.0;
        let mut m = s.serialize_map(None)?;
        for (name, targets) in &sel.groups {
            let mut g = Map::new();
            if let Some(d) = r.group(name).and_then(|g| g.description.clone()) {
                g.insert("description".into(), J::String(d));
            }
            g.insert("targets".into(), json!(targets));
            m.serialize_entry(name, &J::Object(g))?;
        }
        m.end()
    }
}

impl Serialize for Targets<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Doc { r, sel } = self.0;
        let mut m = s.serialize_map(None)?;
        for &i in &sel.all {
            let t = &r.targets[i];
            m.serialize_entry(&t.name.v, &TargetJson(t, &r.cwd))?;
        }
        m.end()
    }
}

/// [`target_json`] written straight to the serializer (same bytes): strings,
/// lists and maps are written from the target without copies; objects and
/// cache specs (whose keys may repeat, which the JSON map merges) go
/// through `target_json`'s code.
struct TargetJson<'a>(&'a Target, &'a Path);

struct Strs<'a>(&'a [Sp<String>]);

impl Serialize for Strs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|x| x.v.as_str()))
    }
}

struct MapJson<'a> {
    m: &'a EntryMap,
    paths: Paths,
    cwd: &'a Path,
}

impl Serialize for MapJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = s.serialize_map(None)?;
        for (k, e) in self.m {
            let v = &e.value.v;
            if self.paths == Paths::ContextValue && v.starts_with('/') {
                o.serialize_entry(k, &relative(Path::new(v), self.cwd))?;
            } else {
                o.serialize_entry(k, v)?;
            }
        }
        o.end()
    }
}

impl Serialize for TargetJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (t, cwd) = (self.0, self.1);
        let mut o = s.serialize_map(None)?;
        for (i, def) in ATTRS.iter().enumerate() {
            let Some(v) = &t.attrs[i] else { continue };
            let key = def.print;
            match (def.shape, v) {
                (Shape::Bool, Value::Str(s)) => o.serialize_entry(key, &(s.v == "true"))?,
                (_, Value::Str(s)) if def.paths == Paths::Value => {
                    o.serialize_entry(key, &relative(Path::new(&s.v), cwd))?
                }
                (_, Value::Str(s)) => o.serialize_entry(key, &s.v)?,
                (_, Value::List(l)) if l.is_empty() => {}
                (Shape::CsvList, Value::List(l)) => {
                    o.serialize_entry(key, &J::Array(l.iter().map(|s| csv_json(&s.v)).collect()))?
                }
                (_, Value::List(l)) => o.serialize_entry(key, &Strs(l))?,
                (_, Value::Map(m)) if m.is_empty() => {}
                (_, Value::Map(m)) if i == A::Annotation.index() => o.serialize_entry(
                    key,
                    &m.iter()
                        .map(|(k, e)| format!("{k}={}", e.value.v))
                        .collect::<Vec<_>>(),
                )?,
                (_, Value::Map(m)) => o.serialize_entry(
                    key,
                    &MapJson {
                        m,
                        paths: def.paths,
                        cwd,
                    },
                )?,
                (_, Value::Objects(l)) if l.is_empty() => {}
                (_, Value::Objects(l)) => {
                    o.serialize_entry(key, &objects_json(l, def.paths, cwd))?
                }
            }
        }
        o.end()
    }
}

fn objects_json(l: &[Obj], paths: Paths, cwd: &Path) -> J {
    J::Array(
        l.iter()
            .map(|obj| {
                J::Object(
                    obj.fields
                        .iter()
                        .map(|(k, s)| {
                            let path = matches!(paths, Paths::Props(p) if p.contains(&k.as_str()))
                                && s.v.starts_with('/');
                            (
                                k.clone(),
                                J::String(if path {
                                    relative(Path::new(&s.v), cwd)
                                } else {
                                    s.v.clone()
                                }),
                            )
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}

/// One target in bake's shape.
pub fn target_json(t: &Target, cwd: &Path) -> J {
    let mut o = Map::new();
    for (i, def) in ATTRS.iter().enumerate() {
        let Some(v) = &t.attrs[i] else { continue };
        let j = match (def.shape, v) {
            (Shape::Bool, Value::Str(s)) => J::Bool(s.v == "true"),
            (_, Value::Str(s)) if def.paths == Paths::Value => J::String(relative(Path::new(&s.v), cwd)),
            (_, Value::Str(s)) => J::String(s.v.clone()),
            (_, Value::List(l)) if l.is_empty() => continue,
            (Shape::CsvList, Value::List(l)) => J::Array(l.iter().map(|s| csv_json(&s.v)).collect()),
            (_, Value::List(l)) => J::Array(l.iter().map(|s| J::String(s.v.clone())).collect()),
            (_, Value::Map(m)) if m.is_empty() => continue,
            (_, Value::Map(m)) if i == A::Annotation.index() => J::Array(m.iter().map(|(k, e)| J::String(format!("{k}={}", e.value.v))).collect()),
            (_, Value::Map(m)) => J::Object(
                m.iter()
                    .map(|(k, e)| {
                        let v = &e.value.v;
                        let shown = if def.paths == Paths::ContextValue && v.starts_with('/') { relative(Path::new(v), cwd) } else { v.clone() };
                        (k.clone(), J::String(shown))
                    })
                    .collect(),
            ),
            (_, Value::Objects(l)) if l.is_empty() => continue,
            (_, Value::Objects(l)) => J::Array(
                l.iter()
                    .map(|obj| {
                        J::Object(
                            obj.fields
                                .iter()
                                .map(|(k, s)| {
                                    let path = matches!(def.paths, Paths::Props(p) if p.contains(&k.as_str())) && s.v.starts_with('/');
                                    (k.clone(), J::String(if path { relative(Path::new(&s.v), cwd) } else { s.v.clone() }))
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            ),
        };
        o.insert(def.print.to_string(), j);
    }
    J::Object(o)
}

/// `type=registry,ref=x` → object; a bare reference means a registry ref.
fn csv_json(s: &str) -> J {
    if !s.contains('=') {
        return json!({ "type": "registry", "ref": s });
    }
    let mut m = Map::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        m.insert(k.trim().to_string(), J::String(v.trim().to_string()));
    }
    J::Object(m)
}
