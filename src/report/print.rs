//! `mybake print`: the resolved configuration as bake-shaped JSON.

use std::path::Path;

use serde_json::{json, Map, Value as J};

use super::relative;
use crate::attrs::{Paths, Shape, A, ATTRS};
use crate::resolve::{Resolved, Selection, Target};
use crate::value::Value;

/// The whole document (stable: same input, same bytes).
pub fn print(r: &Resolved, sel: &Selection) -> String {
    let mut doc = Map::new();
    if !sel.groups.is_empty() {
        let mut groups = Map::new();
        for (name, targets) in &sel.groups {
            let mut g = Map::new();
            if let Some(d) = r.group(name).and_then(|g| g.description.clone()) {
                g.insert("description".into(), J::String(d));
            }
            g.insert("targets".into(), json!(targets));
            groups.insert(name.clone(), J::Object(g));
        }
        doc.insert("group".into(), J::Object(groups));
    }
    let mut targets = Map::new();
    for &i in &sel.all {
        let t = &r.targets[i];
        targets.insert(t.name.v.clone(), target_json(t, &r.cwd));
    }
    doc.insert("target".into(), J::Object(targets));
    let mut s = serde_json::to_string_pretty(&J::Object(doc)).unwrap_or_default();
    s.push('\n');
    s
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
