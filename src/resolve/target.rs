//! A concrete, fully resolved target.

use std::path::PathBuf;

use crate::attrs::A;
use crate::source::Sp;
use crate::value::{Attrs, Obj, Value};

#[derive(Debug, Clone)]
pub struct Target {
    pub name: Sp<String>,
    /// The matrix template this target was expanded from.
    pub template: Option<String>,
    /// Name starts with `_`: inherited from, never built unless named.
    pub is_abstract: bool,
    /// Indexed like [`crate::attrs::ATTRS`]. Strings are interpolated;
    /// paths are absolute.
    pub attrs: Attrs,
    /// `contexts` entries `target:NAME`: (context name, dependency).
    pub deps: Vec<(String, Sp<String>)>,
    /// The typed `output`, `secret`, `ssh`, `attest` and cache values
    /// (what exec and publish read; `attrs` keeps them as written).
    pub spec: super::spec::Spec,
}

impl Target {
    pub fn get(&self, a: A) -> Option<&Value> {
        self.attrs.get(a.index())
    }
    pub fn str(&self, a: A) -> Option<&Sp<String>> {
        self.get(a).and_then(Value::as_str)
    }
    pub fn bool(&self, a: A) -> Option<bool> {
        self.str(a).map(|s| s.v == "true")
    }
    pub fn list(&self, a: A) -> &[Sp<String>] {
        self.get(a).and_then(Value::as_list).unwrap_or(&[])
    }
    pub fn objects(&self, a: A) -> &[Obj] {
        self.get(a).and_then(Value::as_objects).unwrap_or(&[])
    }
    /// Declared platforms (empty = the builder's native platform).
    pub fn platforms(&self) -> &[Sp<String>] {
        self.list(A::Platforms)
    }
    /// Absolute context directory.
    pub fn context_dir(&self) -> PathBuf {
        self.str(A::Context)
            .map(|s| PathBuf::from(&s.v))
            .unwrap_or_default()
    }
}
