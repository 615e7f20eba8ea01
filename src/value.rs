//! Attribute values, before and after interpolation (the same types: strings
//! are interpolated in place, spans kept).

use std::fmt;
use std::sync::Arc;

use crate::source::{Sp, Span};

/// One `key=value` object (`output`, `secret`, `attest`, parsed cache specs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obj {
    pub span: Span,
    /// Fields in declaration order (`type` first for typed nodes).
    pub fields: Vec<(String, Sp<String>)>,
}

impl Obj {
    pub fn get(&self, key: &str) -> Option<&Sp<String>> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// A map entry remembers where its key was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key_span: Span,
    pub value: Sp<String>,
}

/// Map entries sorted by key, keys unique: the map of `KeyValue` and
/// `ChildMap` attributes. It behaves like the `BTreeMap<String, Entry>` it
/// replaces (same order, `insert` keeps the key and replaces the value), but
/// is a plain vector: these maps mostly hold one or two entries, and a
/// one-entry `BTreeMap` allocates a ~900-byte node (with thousands of
/// targets, the copies made by merging and inheritance added up to tens of
/// MiB).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct EntryMap {
    items: Vec<(String, Entry)>,
}

impl EntryMap {
    pub fn new() -> EntryMap {
        EntryMap::default()
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.items.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.find(key).ok().map(|i| &self.items[i].1)
    }
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }
    /// Insert or replace (an existing key keeps its place; the old value
    /// is returned).
    pub fn insert(&mut self, key: String, value: Entry) -> Option<Entry> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.items[i].1, value)),
            Err(i) => {
                self.items.insert(i, (key, value));
                None
            }
        }
    }
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.find(key).ok().map(|i| &mut self.items[i].1)
    }
    pub fn iter(&self) -> EntryIter<'_> {
        self.items.iter().map(|(k, v)| (k, v))
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.items.iter().map(|(k, _)| k)
    }
    pub fn values(&self) -> impl Iterator<Item = &Entry> {
        self.items.iter().map(|(_, v)| v)
    }
    /// Keys with their entries to change.
    pub fn values_mut_keyed(&mut self) -> impl Iterator<Item = (&String, &mut Entry)> {
        self.items.iter_mut().map(|(k, v)| (&*k, v))
    }
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.items.iter_mut().map(|(_, v)| v)
    }
}

pub type EntryIter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, Entry)>,
    fn(&(String, Entry)) -> (&String, &Entry),
>;

impl fmt::Debug for EntryMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a EntryMap {
    type Item = (&'a String, &'a Entry);
    type IntoIter = EntryIter<'a>;
    fn into_iter(self) -> EntryIter<'a> {
        self.iter()
    }
}

impl IntoIterator for EntryMap {
    type Item = (String, Entry);
    type IntoIter = std::vec::IntoIter<(String, Entry)>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl FromIterator<(String, Entry)> for EntryMap {
    fn from_iter<I: IntoIterator<Item = (String, Entry)>>(iter: I) -> EntryMap {
        let mut m = EntryMap::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl<const N: usize> From<[(String, Entry); N]> for EntryMap {
    fn from(a: [(String, Entry); N]) -> EntryMap {
        a.into_iter().collect()
    }
}

impl std::ops::Index<&str> for EntryMap {
    type Output = Entry;
    fn index(&self, key: &str) -> &Entry {
        self.get(key).expect("no entry for key")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `Str` and `Bool` shapes (a bool is `"true"`/`"false"` after
    /// interpolation).
    Str(Sp<String>),
    /// `List` and `CsvList` shapes.
    List(Vec<Sp<String>>),
    /// `KeyValue` and `ChildMap` shapes.
    Map(EntryMap),
    /// `Typed` and `Props` shapes.
    Objects(Vec<Obj>),
}

impl Value {
    /// Merge `later` into `self` as files and inheritance do: maps merge by
    /// key, everything else is replaced.
    pub fn merge(&mut self, later: &Value) {
        match (self, later) {
            (Value::Map(a), Value::Map(b)) => {
                for (k, v) in b {
                    match a.get_mut(k) {
                        Some(e) => *e = v.clone(),
                        None => {
                            a.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            (a, b) => *a = b.clone(),
        }
    }

    /// Whether some string of the value satisfies `pred`.
    pub fn any_string(&self, mut pred: impl FnMut(&Sp<String>) -> bool) -> bool {
        match self {
            Value::Str(s) => pred(s),
            Value::List(l) => l.iter().any(pred),
            Value::Map(m) => m.values().any(|e| pred(&e.value)),
            Value::Objects(o) => o.iter().any(|o| o.fields.iter().any(|(_, v)| pred(v))),
        }
    }

    /// `f` on every string in the value, mutably (for interpolation).
    pub fn each_string_mut(&mut self, mut f: impl FnMut(&mut Sp<String>)) {
        match self {
            Value::Str(s) => f(s),
            Value::List(l) => l.iter_mut().for_each(f),
            Value::Map(m) => m.values_mut().for_each(|e| f(&mut e.value)),
            Value::Objects(o) => o
                .iter_mut()
                .for_each(|o| o.fields.iter_mut().for_each(|(_, v)| f(v))),
        }
    }

    pub fn as_str(&self) -> Option<&Sp<String>> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[Sp<String>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn as_map(&self) -> Option<&EntryMap> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_objects(&self) -> Option<&[Obj]> {
        match self {
            Value::Objects(o) => Some(o),
            _ => None,
        }
    }
}

/// A target's attribute values, indexed like [`crate::attrs::ATTRS`]: only
/// the attributes that are set are stored, in table order (a bit per
/// attribute says which). A target sets a handful of the table's
/// attributes, and thousands of targets each hold such a set (declared,
/// then resolved), so a slot per attribute would be mostly empty slots.
///
/// Values are shared, not copied, between the sets they are merged into
/// (a parent's `platforms` among all the targets inheriting it, a
/// declaration's `contexts` with its resolved target); [`Attrs::get_mut`]
/// copies a shared value before it is changed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Bit `i`: attribute `i` is set.
    set: u64,
    /// The set attributes' values, in table order.
    values: Vec<Arc<Value>>,
}

const _: () = assert!(crate::attrs::COUNT <= u64::BITS as usize);

impl Attrs {
    pub fn new() -> Attrs {
        Attrs::default()
    }
    fn bit(i: usize) -> u64 {
        1 << i
    }
    /// Where attribute `i`'s value is (or would go) in `values`.
    fn pos(&self, i: usize) -> usize {
        (self.set & (Self::bit(i) - 1)).count_ones() as usize
    }
    pub fn contains(&self, i: usize) -> bool {
        self.set & Self::bit(i) != 0
    }
    pub fn is_empty(&self) -> bool {
        self.set == 0
    }
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.contains(i).then(|| &*self.values[self.pos(i)])
    }
    /// Attribute `i`'s value to change (copied first if it is shared).
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Value> {
        if self.contains(i) {
            let p = self.pos(i);
            Some(Arc::make_mut(&mut self.values[p]))
        } else {
            None
        }
    }
    /// Unset attribute `i`.
    pub fn remove(&mut self, i: usize) {
        if self.contains(i) {
            let p = self.pos(i);
            self.values.remove(p);
            self.set &= !Self::bit(i);
        }
    }
    /// Set attribute `i` (replacing any value).
    pub fn set(&mut self, i: usize, v: Value) {
        self.set_shared(i, Arc::new(v));
    }
    fn set_shared(&mut self, i: usize, v: Arc<Value>) {
        let p = self.pos(i);
        if self.contains(i) {
            self.values[p] = v;
        } else {
            self.set |= Self::bit(i);
            self.values.insert(p, v);
        }
    }
    /// The set attributes in table order: (index, value).
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Value)> {
        self.indices().zip(self.values.iter().map(|v| &**v))
    }
    fn indices(&self) -> impl Iterator<Item = usize> {
        let mut rest = self.set;
        std::iter::from_fn(move || {
            (rest != 0).then(|| {
                let i = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                i
            })
        })
    }
    /// Merge `later` in as files and inheritance do ([`Value::merge`] for
    /// attributes both set).
    pub fn merge(&mut self, later: &Attrs) {
        if self.is_empty() {
            self.clone_from(later);
            return;
        }
        for (i, v) in later.indices().zip(&later.values) {
            match (self.get(i), &**v) {
                // Maps merge by key: only then is the earlier value changed.
                (Some(Value::Map(_)), Value::Map(_)) => {
                    if let Some(a) = self.get_mut(i) {
                        a.merge(v);
                    }
                }
                _ => self.set_shared(i, Arc::clone(v)),
            }
        }
    }
}

impl fmt::Debug for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(i, v)| (crate::attrs::ATTRS[i].name, v)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Entry {
                            key_span: Span::NONE,
                            value: Sp::none(v.to_string()),
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn maps_merge_by_key_lists_replace() {
        let mut a = m(&[("A", "1"), ("B", "2")]);
        a.merge(&m(&[("B", "3"), ("C", "4")]));
        assert_eq!(a, m(&[("A", "1"), ("B", "3"), ("C", "4")]));
        let mut l = Value::List(vec![Sp::none("x".into())]);
        l.merge(&Value::List(vec![Sp::none("y".into())]));
        assert_eq!(l, Value::List(vec![Sp::none("y".into())]));
    }

    #[test]
    fn attrs_keep_table_order() {
        let s = |v: &str| Value::Str(Sp::none(v.to_string()));
        let mut a = Attrs::new();
        a.set(7, s("g"));
        a.set(2, s("c"));
        a.set(20, s("u"));
        a.set(7, s("G"));
        assert_eq!(a.iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![2, 7, 20]);
        assert_eq!(a.get(7), Some(&s("G")));
        assert_eq!(a.get(3), None);
        assert!(a.contains(20) && !a.contains(0));
        let mut b = Attrs::new();
        b.set(0, s("a"));
        b.set(7, s("x"));
        b.merge(&a);
        assert_eq!(
            b.iter().map(|(i, _)| i).collect::<Vec<_>>(),
            vec![0, 2, 7, 20]
        );
        assert_eq!(b.get(7), Some(&s("G")));
        let mut e = Attrs::new();
        e.merge(&a);
        assert_eq!(e, a);
        if let Some(Value::Str(v)) = e.get_mut(2) {
            v.v.push('!');
        }
        assert_eq!(e.get(2), Some(&s("c!")));
    }
}
