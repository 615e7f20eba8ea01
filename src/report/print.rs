//! `mybake print`: the resolved configuration as bake-shaped JSON.

use std::path::Path;

use std::io::Write;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::ser::Formatter;
use serde_json::{json, Map, Value as J};

use super::relative;
use crate::attrs::{Paths, Shape, A, ATTRS};
use crate::diag::escape_json_extra;
use crate::par;
use crate::resolve::{Resolved, Selection, Target};
use crate::source::Sp;
use crate::value::{EntryMap, Obj, Value};

/// The whole document (stable: same input, same bytes): what serde_json's
/// pretty printer gives for the document as one tree ([`target_json`] per
/// target), without building that tree.
pub fn print(r: &Resolved, sel: &Selection) -> String {
    print_parts(r, sel).concat()
}

/// [`print`] in pieces, to be written one after the other (a large
/// document is not copied into one string).
///
/// Each target is serialized straight from the resolved target. Targets
/// are written in parts at once ([`crate::par`]), each part into its own
/// buffer. The document around the targets (two fixed keys) is written
/// here, in the pretty printer's layout.
pub fn print_parts(r: &Resolved, sel: &Selection) -> Vec<String> {
    let mut head = Vec::with_capacity(4096);
    head.push(b'{');
    if !sel.groups.is_empty() {
        entry_key(&mut head, true, 1, "group");
        if write_value(&mut head, 1, &Groups(r, sel)).is_err() {
            return Vec::new();
        }
    }
    entry_key(&mut head, sel.groups.is_empty(), 1, "target");
    head.push(b'{');
    let ranges = par::ranges(sel.all.len(), par::parts(), TARGETS_PER_PART_MIN);
    let parts = par::map(ranges, |range| -> Option<String> {
        let mut buf = Vec::with_capacity(range.len() * TARGET_BYTES);
        for (k, &i) in sel.all[range.clone()].iter().enumerate() {
            let t = &r.targets[i];
            entry_key(&mut buf, range.start + k == 0, 2, &t.name.v);
            write_value(&mut buf, 2, &TargetJson(t, &r.cwd)).ok()?;
        }
        String::from_utf8(buf).ok().map(escape_json_extra)
    });
    let tail = if sel.all.is_empty() {
        "}\n}\n"
    } else {
        "\n  }\n}\n"
    };
    std::iter::once(String::from_utf8(head).ok().map(escape_json_extra))
        .chain(parts)
        .chain([Some(tail.to_string())])
        .collect::<Option<Vec<String>>>()
        .unwrap_or_default()
}

/// About 500 bytes per target in practice: buffers sized for that do not
/// grow.
const TARGET_BYTES: usize = 512;

/// Fewer targets than this are written in one part.
const TARGETS_PER_PART_MIN: usize = 256;

/// serde_json's `PrettyFormatter` (two-space indent) for a value that
/// starts `depth` levels into the document (serde_json's starts at the
/// top): the same bytes as that value written inside the whole tree.
struct Pretty {
    depth: usize,
    has_value: bool,
}

impl Pretty {
    fn newline<W: ?Sized + Write>(&self, w: &mut W) -> std::io::Result<()> {
        // A newline and the indentation in one write (deeper than this
        // document goes, a write per level).
        const LINE: &[u8; 33] = b"\n                                ";
        match LINE.get(..1 + 2 * self.depth) {
            Some(line) => w.write_all(line),
            None => {
                w.write_all(b"\n")?;
                for _ in 0..self.depth {
                    w.write_all(b"  ")?;
                }
                Ok(())
            }
        }
    }
    fn begin<W: ?Sized + Write>(&mut self, w: &mut W, open: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(open)
    }
    fn end<W: ?Sized + Write>(&mut self, w: &mut W, close: &[u8]) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(close)
    }
    fn item<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }
}

impl Formatter for Pretty {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, b"[")
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"]")
    }
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, b"{")
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"}")
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// One key of a map `depth` levels in, as the pretty printer writes it
/// (after the map's `{` or the previous entry).
fn entry_key(buf: &mut Vec<u8>, first: bool, depth: usize, key: &str) {
    let mut f = Pretty {
        depth,
        has_value: false,
    };
    let _ = f.item(buf, first);
    let _ = serde_json::to_writer(&mut *buf, key);
    let _ = f.begin_object_value(buf);
}

/// A map entry's value `depth` levels in.
fn write_value(buf: &mut Vec<u8>, depth: usize, v: &impl Serialize) -> serde_json::Result<()> {
    let f = Pretty {
        depth,
        has_value: false,
    };
    v.serialize(&mut serde_json::Serializer::with_formatter(buf, f))
}

/// The groups the request went through, with their members as declared.
struct Groups<'a>(&'a Resolved, &'a Selection);

impl Serialize for Groups<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Groups(r, sel) = *self;
        let mut m = s.serialize_map(None)?;
        for (name, &gi) in &sel.groups {
            let g = &r.groups[gi];
            m.serialize_entry(
                name,
                &GroupJson {
                    description: g.description.as_deref(),
                    targets: Strs(&g.targets),
                },
            )?;
        }
        m.end()
    }
}

struct GroupJson<'a> {
    description: Option<&'a str>,
    targets: Strs<'a>,
}

impl Serialize for GroupJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(d) = self.description {
            m.serialize_entry("description", d)?;
        }
        m.serialize_entry("targets", &self.targets)?;
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
        for (i, v) in t.attrs.iter() {
            let def = &ATTRS[i];
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
    for (i, v) in t.attrs.iter() {
        let def = &ATTRS[i];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::{select, tests_support};

    /// What serializing the whole document as one tree gives.
    fn as_tree(r: &Resolved, sel: &Selection) -> String {
        let mut doc = Map::new();
        if !sel.groups.is_empty() {
            let mut groups = Map::new();
            for (name, &gi) in &sel.groups {
                let mut g = Map::new();
                if let Some(d) = r.groups[gi].description.clone() {
                    g.insert("description".into(), J::String(d));
                }
                let targets: Vec<&str> =
                    r.groups[gi].targets.iter().map(|t| t.v.as_str()).collect();
                g.insert("targets".into(), json!(targets));
                groups.insert(name.clone(), J::Object(g));
            }
            doc.insert("group".into(), J::Object(groups));
        }
        let targets = sel
            .all
            .iter()
            .map(|&i| {
                let t = &r.targets[i];
                (t.name.v.clone(), target_json(t, &r.cwd))
            })
            .collect();
        doc.insert("target".into(), J::Object(targets));
        serde_json::to_string_pretty(&J::Object(doc)).unwrap() + "\n"
    }

    #[test]
    fn same_bytes_as_the_whole_tree() {
        let mut text = String::from(
            r#"group "default" { targets "a" "many"; description "all \"of\" it" }
group "many" { targets "m" }
group "empty" { targets }
target "a" {
    platforms "linux/amd64" "linux/arm64"
    tags "r/a:1" "r/a:2"
    arg "K" "v\n\u{e9}"
    contexts { base "target:b"; assets "./assets" }
    output "oci" dest="out.tar"
    cache-from "r/cache" "type=local,src=/tmp/c"
    annotation "k" "v"
    no-cache true
}
target "b" { context "sub" }
"#,
        );
        for i in 0..2 * TARGETS_PER_PART_MIN {
            text.push_str(&format!("target \"m{i}\" {{ tags \"r/m{i}\" }}\n"));
        }
        text.push_str("target \"m\" { inherits \"m0\" }\n");
        let r = tests_support::run(&text).unwrap();
        for names in [
            &[][..],
            &["b".to_string()],
            &["empty".to_string()],
            &["many".to_string(), "a".to_string()],
            &(0..2 * TARGETS_PER_PART_MIN)
                .map(|i| format!("m{i}"))
                .collect::<Vec<_>>(),
        ] {
            let sel = select(&r, names).unwrap();
            assert_eq!(print(&r, &sel), as_tree(&r, &sel), "{names:?}");
        }
    }
}
