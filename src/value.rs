//! Attribute values, before and after interpolation (the same types: strings
//! are interpolated in place, spans kept).

use std::collections::BTreeMap;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `Str` and `Bool` shapes (a bool is `"true"`/`"false"` after
    /// interpolation).
    Str(Sp<String>),
    /// `List` and `CsvList` shapes.
    List(Vec<Sp<String>>),
    /// `KeyValue` and `ChildMap` shapes.
    Map(BTreeMap<String, Entry>),
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
                    a.insert(k.clone(), v.clone());
                }
            }
            (a, b) => *a = b.clone(),
        }
    }

    /// Every string in the value, mutably (for interpolation).
    pub fn strings_mut(&mut self) -> Vec<&mut Sp<String>> {
        match self {
            Value::Str(s) => vec![s],
            Value::List(l) => l.iter_mut().collect(),
            Value::Map(m) => m.values_mut().map(|e| &mut e.value).collect(),
            Value::Objects(o) => o
                .iter_mut()
                .flat_map(|o| o.fields.iter_mut().map(|(_, v)| v))
                .collect(),
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
    pub fn as_map(&self) -> Option<&BTreeMap<String, Entry>> {
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
}
