//! Decoding a target body through the attribute table ([`crate::attrs`]).

use super::duplicate;
use super::kdl::{Lit, Node, Value as KValue};
use crate::attrs::{self, Shape, ATTRS};
use crate::diag::{suggest, Diag, Diagnostics};
use crate::source::{FileId, Sp, Span};
use crate::value::{Attrs, Entry, EntryMap, Obj, Value};

/// One `matrix` axis: name and values.
pub type Axis = (Sp<String>, Vec<AxisValue>);

/// One value of a matrix axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxisValue {
    /// A string (may be an expression giving a list).
    Str(Sp<String>),
    /// An `item` child: an object read as `${axis.field}`.
    Item(Sp<Vec<(String, Sp<String>)>>),
}

/// One `target` block as written.
#[derive(Debug, Clone)]
pub struct TargetDecl {
    pub file: FileId,
    pub name: Sp<String>,
    pub span: Span,
    pub inherits: Option<Vec<Sp<String>>>,
    pub matrix: Option<Sp<Vec<Axis>>>,
    pub attrs: Attrs,
}

/// Decode a target body (also used when knuffel rejected the file, so
/// target errors are reported with the others).
pub(super) fn decode_body(
    file: FileId,
    name: Sp<String>,
    span: Span,
    body: &[Node<'_>],
    diags: &mut Diagnostics,
) -> TargetDecl {
    let mut out = TargetDecl {
        file,
        name,
        span,
        inherits: None,
        matrix: None,
        attrs: Attrs::new(),
    };
    // Where each attribute was first set in this block (duplicate checks).
    let mut attr_spans = [None::<Span>; attrs::COUNT];
    for node in body {
        let name: &str = &node.name;
        let name_span = node.name_span.span(file);
        let mut n = NodeReader {
            file,
            node,
            diags: &mut *diags,
            name,
            name_span,
        };
        match name {
            "inherits" => {
                n.no_props();
                n.no_children();
                let list = n.strings();
                out.inherits.get_or_insert_with(Vec::new).extend(list);
            }
            "matrix" => {
                n.no_args();
                n.no_props();
                if let Some(prev) = &out.matrix {
                    n.diags.push(duplicate("matrix", prev.span, name_span));
                }
                let axes = n.children().iter().map(|c| {
                    let mut r = NodeReader {
                        file,
                        node: c,
                        diags: &mut *n.diags,
                        name: &c.name,
                        name_span: c.name_span.span(file),
                    };
                    r.no_props();
                    let mut vals: Vec<AxisValue> =
                        r.strings().into_iter().map(AxisValue::Str).collect();
                    if let Some(ch) = &c.children {
                        for item in &ch.nodes {
                            vals.extend(axis_item(file, item, r.diags));
                        }
                    }
                    if vals.is_empty() {
                        r.diags.push(
                            Diag::new(
                                "mybake::load::empty-axis",
                                format!("matrix axis `{}` has no values", r.name),
                            )
                            .label(r.name_span, "add at least one value"),
                        );
                    }
                    (Sp::new(r.name.to_string(), r.name_span), vals)
                });
                let axes: Vec<Axis> = axes.collect();
                if axes.is_empty() {
                    n.diags.push(
                        Diag::new("mybake::load::empty-matrix", "`matrix` has no axes")
                            .label(name_span, "add axes like `svc \"api\" \"worker\"`"),
                    );
                }
                out.matrix = Some(Sp::new(axes, name_span));
            }
            _ => match attrs::by_name(name) {
                Some(i) => {
                    let def = &ATTRS[i];
                    let value = n.value(def.shape, def.props, def.required);
                    let repeatable = matches!(
                        def.shape,
                        Shape::List
                            | Shape::CsvList
                            | Shape::KeyValue
                            | Shape::Typed
                            | Shape::Props
                            | Shape::ChildMap
                    );
                    match (out.attrs.get_mut(i), value) {
                        (_, None) => {}
                        (None, Some(v)) => {
                            out.attrs.set(i, v);
                            attr_spans[i] = Some(name_span);
                        }
                        (Some(prev), Some(v)) if repeatable => append(prev, v, def.name, diags),
                        (Some(_), Some(_)) => diags.push(duplicate(
                            def.name,
                            attr_spans[i].unwrap_or(Span::NONE),
                            name_span,
                        )),
                    }
                }
                // Past the cap, only counted (a suggestion compares the
                // name with every attribute's).
                None if diags.is_full() => diags.count_dropped(),
                None => {
                    let d = Diag::new(
                        "mybake::load::unknown",
                        format!("unknown target attribute `{name}`"),
                    )
                    .label(name_span, "not a target attribute")
                    .help_opt(suggest(name, attrs::target_node_names()));
                    diags.push(d);
                }
            },
        }
    }
    out
}

/// A repeated node in the same block: lists and objects append; map keys
/// must not repeat.
fn append(prev: &mut Value, v: Value, name: &str, diags: &mut Diagnostics) {
    match (prev, v) {
        (Value::List(a), Value::List(b)) => a.extend(b),
        (Value::Objects(a), Value::Objects(b)) => a.extend(b),
        (Value::Map(a), Value::Map(b)) => {
            for (k, e) in b {
                if let Some(old) = a.get(&k) {
                    diags.push(
                        Diag::new(
                            "mybake::load::duplicate",
                            format!("`{name}` key `{k}` is set twice in the same block"),
                        )
                        .label(e.key_span, "set again here")
                        .label(old.key_span, "first set here"),
                    );
                } else {
                    a.insert(k, e);
                }
            }
        }
        _ => {}
    }
}

/// An `item key=value …` child of a matrix axis (values are strings,
/// numbers or booleans, kept as text).
fn axis_item(file: FileId, item: &Node<'_>, diags: &mut Diagnostics) -> Option<AxisValue> {
    let at = item.name_span.span(file);
    if item.name != "item" {
        diags.push(
            Diag::new(
                "mybake::load::unknown",
                format!("unknown node `{}` in a matrix axis", item.name),
            )
            .label(at, "unknown node")
            .help("an axis lists its values as arguments, or objects as `item key=\"value\" …` children"),
        );
        return None;
    }
    for a in &item.args {
        diags.push(
            Diag::new(
                "mybake::load::unexpected-argument",
                "`item` takes properties only (`item name=\"a\" ver=\"1\"`)",
            )
            .label(a.span.span(file), "unexpected argument"),
        );
    }
    if let Some(c) = &item.children {
        diags.push(
            Diag::new(
                "mybake::load::unexpected-children",
                "`item` takes no children block",
            )
            .label(c.span.span(file), "unexpected block"),
        );
    }
    let mut fields = Vec::with_capacity(item.props.len());
    for p in &item.props {
        let span = p.value.span.span(file);
        let text = match &p.value.lit {
            Lit::Str(s) => s.to_string(),
            Lit::Bool(b) => b.to_string(),
            Lit::Int(..) => match p.value.lit.as_i64() {
                Some(Some(n)) => n.to_string(),
                _ => {
                    diags.push(
                        Diag::new("mybake::load::bad-value", "integer out of range")
                            .label(span, "does not fit in 64 bits"),
                    );
                    continue;
                }
            },
            Lit::Decimal(d) => d.to_string(),
            Lit::Null => continue,
        };
        fields.push((p.key.to_string(), Sp::new(text, span)));
    }
    Some(AxisValue::Item(Sp::new(fields, at)))
}

struct NodeReader<'a, 'src> {
    file: FileId,
    node: &'a Node<'src>,
    diags: &'a mut Diagnostics,
    name: &'a str,
    name_span: Span,
}

impl<'a, 'src> NodeReader<'a, 'src> {
    fn span_of(&self, v: &KValue<'_>) -> Span {
        v.span.span(self.file)
    }

    fn no_props(&mut self) {
        for p in &self.node.props {
            let span = p.key_span.span(self.file);
            self.diags.push(
                Diag::new(
                    "mybake::load::unknown",
                    format!("`{}` takes no property `{}`", self.name, p.key),
                )
                .label(span, "unexpected property"),
            );
        }
    }

    fn no_args(&mut self) {
        for a in &self.node.args {
            let span = self.span_of(a);
            self.diags.push(
                Diag::new(
                    "mybake::load::unexpected-argument",
                    format!("`{}` takes no arguments", self.name),
                )
                .label(span, "unexpected argument"),
            );
        }
    }

    fn no_children(&mut self) {
        if let Some(c) = &self.node.children {
            let span = c.span.span(self.file);
            self.diags.push(
                Diag::new(
                    "mybake::load::unexpected-children",
                    format!("`{}` takes no children block", self.name),
                )
                .label(span, "unexpected block"),
            );
        }
    }

    fn children(&mut self) -> &'a [Node<'src>] {
        match &self.node.children {
            Some(c) => &c.nodes,
            None => {
                self.diags.push(
                    Diag::new(
                        "mybake::load::missing-children",
                        format!("`{}` needs a block `{{ … }}`", self.name),
                    )
                    .label(self.name_span, "no block"),
                );
                &[]
            }
        }
    }

    fn string(&mut self, v: &KValue<'_>, what: &str) -> Option<Sp<String>> {
        match &v.lit {
            Lit::Str(s) => Some(Sp::new(s.to_string(), self.span_of(v))),
            other => {
                let span = self.span_of(v);
                self.diags
                    .push(wrong_type(self.name, what, "a string", other, span));
                None
            }
        }
    }

    /// All arguments as strings.
    fn strings(&mut self) -> Vec<Sp<String>> {
        let node = self.node;
        node.args
            .iter()
            .filter_map(|a| self.string(a, "values"))
            .collect()
    }

    fn arity(&mut self, n: usize, what: &str) -> bool {
        let got = self.node.args.len();
        if got == n {
            return true;
        }
        let span = if got > n {
            self.span_of(&self.node.args[n])
        } else {
            self.name_span
        };
        let msg = format!(
            "`{}` takes {what}, found {got} argument{}",
            self.name,
            if got == 1 { "" } else { "s" }
        );
        self.diags.push(Diag::new("mybake::load::arity", msg).label(
            span,
            if got > n {
                "unexpected argument"
            } else {
                "missing value"
            },
        ));
        false
    }

    fn value(
        &mut self,
        shape: Shape,
        allowed: Option<&[&str]>,
        required: &[&str],
    ) -> Option<Value> {
        let node = self.node;
        match shape {
            Shape::Str => {
                self.no_props();
                self.no_children();
                if !self.arity(1, "one string") {
                    return None;
                }
                self.string(&node.args[0], "value").map(Value::Str)
            }
            Shape::Bool => {
                self.no_props();
                self.no_children();
                if !self.arity(1, "one boolean") {
                    return None;
                }
                let a = &node.args[0];
                let span = self.span_of(a);
                match &a.lit {
                    Lit::Bool(b) => Some(Value::Str(Sp::new(b.to_string(), span))),
                    Lit::Str(s) => Some(Value::Str(Sp::new(s.to_string(), span))),
                    other => {
                        self.diags.push(wrong_type(
                            self.name,
                            "value",
                            "a boolean (`true` or `false`)",
                            other,
                            span,
                        ));
                        None
                    }
                }
            }
            Shape::List | Shape::CsvList => {
                self.no_props();
                self.no_children();
                Some(Value::List(self.strings()))
            }
            Shape::KeyValue => {
                self.no_props();
                self.no_children();
                if !self.arity(2, "a key and a value") {
                    return None;
                }
                let k = self.string(&node.args[0], "key")?;
                let v = self.string(&node.args[1], "value")?;
                let mut m = EntryMap::new();
                m.insert(
                    k.v,
                    Entry {
                        key_span: k.span,
                        value: v,
                    },
                );
                Some(Value::Map(m))
            }
            Shape::ChildMap => {
                self.no_args();
                self.no_props();
                let file = self.file;
                let mut m = EntryMap::new();
                for c in self.children() {
                    let key_span = c.name_span.span(file);
                    let mut r = NodeReader {
                        file,
                        node: c,
                        diags: &mut *self.diags,
                        name: &c.name,
                        name_span: key_span,
                    };
                    r.no_props();
                    r.no_children();
                    if !r.arity(1, "one string") {
                        continue;
                    }
                    let Some(v) = r.string(&c.args[0], "value") else {
                        continue;
                    };
                    let key = c.name.to_string();
                    if let Some(old) = m.get(&key) {
                        self.diags.push(
                            Diag::new(
                                "mybake::load::duplicate",
                                format!("context `{key}` is set twice in the same block"),
                            )
                            .label(key_span, "set again here")
                            .label(old.key_span, "first set here"),
                        );
                        continue;
                    }
                    m.insert(key, Entry { key_span, value: v });
                }
                Some(Value::Map(m))
            }
            Shape::Typed | Shape::Props => {
                self.no_children();
                let mut fields = Vec::new();
                if shape == Shape::Typed {
                    if !self.arity(1, "one type") {
                        return None;
                    }
                    fields.push(("type".to_string(), self.string(&node.args[0], "type")?));
                } else {
                    self.no_args();
                }
                for p in &node.props {
                    let (key, v): (&str, _) = (&p.key, &p.value);
                    let kspan = p.key_span.span(self.file);
                    if let Some(allowed) = allowed {
                        if !allowed.contains(&key) {
                            self.diags.push(
                                Diag::new(
                                    "mybake::load::unknown",
                                    format!("`{}` has no property `{key}`", self.name),
                                )
                                .label(kspan, "unknown property")
                                .help_opt(
                                    suggest(key, allowed.iter().copied()).or_else(|| {
                                        Some(format!("known properties: {}", allowed.join(", ")))
                                    }),
                                ),
                            );
                            continue;
                        }
                    }
                    let span = self.span_of(v);
                    let s = match &v.lit {
                        Lit::Str(s) => s.to_string(),
                        Lit::Bool(b) => b.to_string(),
                        Lit::Int(..) => match v.lit.as_i64() {
                            Some(Some(n)) => n.to_string(),
                            _ => continue,
                        },
                        other => {
                            self.diags.push(wrong_type(
                                self.name,
                                &format!("property `{key}`"),
                                "a string",
                                other,
                                span,
                            ));
                            continue;
                        }
                    };
                    fields.push((key.to_string(), Sp::new(s, span)));
                }
                if !required.is_empty()
                    && !required.iter().any(|r| fields.iter().any(|(k, _)| k == r))
                {
                    self.diags.push(
                        Diag::new(
                            "mybake::load::missing-property",
                            format!("`{}` needs `{}=`", self.name, required.join("=` or `")),
                        )
                        .label(self.name_span, "missing property"),
                    );
                    return None;
                }
                let span = node.span.span(self.file);
                Some(Value::Objects(vec![Obj { span, fields }]))
            }
        }
    }
}

fn wrong_type(node: &str, what: &str, expected: &str, found: &Lit<'_>, span: Span) -> Diag {
    let mut d = Diag::new(
        "mybake::load::wrong-type",
        format!(
            "`{node}` {what}: expected {expected}, found {}",
            found.kind()
        ),
    )
    .label(span, format!("this is {}", found.kind()));
    if expected == "a string" {
        if let Lit::Int(..) | Lit::Bool(_) | Lit::Decimal(_) = found {
            d = d.help("quote it to make it a string");
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::super::decode_file;
    use super::*;
    use crate::attrs::A;

    fn decode(text: &str) -> (Vec<TargetDecl>, Diagnostics) {
        let mut d = Diagnostics::default();
        let f = decode_file(0, "t.kdl", text, &mut d);
        (f.targets, d)
    }

    #[test]
    fn decodes_every_shape() {
        let (t, d) = decode(
            r#"target "a" {
    inherits "_x" "_y"
    context "svc"
    no-cache true
    pull "${PULL}"
    tags "a:1" "a:2"
    tags "a:3"
    arg "A" "1"
    arg "B" "2"
    contexts { base "target:base"; assets "./assets" }
    output "oci" dest="x.tar"
    output "registry"
    secret id="tok" env="TOKEN"
    matrix { v "1" "2" }
}"#,
        );
        assert!(d.is_empty(), "{d:?}");
        let t = &t[0];
        assert_eq!(t.inherits.as_ref().unwrap().len(), 2);
        assert_eq!(
            t.attrs
                .get(A::Tags.index())
                .unwrap()
                .as_list()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            t.attrs.get(A::Arg.index()).unwrap().as_map().unwrap().len(),
            2
        );
        assert_eq!(
            t.attrs
                .get(A::Contexts.index())
                .unwrap()
                .as_map()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            t.attrs
                .get(A::Output.index())
                .unwrap()
                .as_objects()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(t.matrix.as_ref().unwrap().v[0].1.len(), 2);
    }

    #[test]
    fn reports_all_errors_of_a_file() {
        let (_, d) = decode(
            r#"target "a" {
    platfroms "linux/amd64"
    context 3
    no-cache "x" "y"
    context "a"
    context "b"
    secret src="x"
    output "oci" dest=1.5
}"#,
        );
        let msgs: Vec<_> = d.items.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(d.len(), 6, "{msgs:#?}");
        assert_eq!(
            d.items[0].help.as_deref(),
            Some("did you mean `platforms`?")
        );
    }
}
