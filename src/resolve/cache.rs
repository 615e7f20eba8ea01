//! `cache-from` / `cache-to` values: the one parser that the reference
//! check (resolve) and the solve request (exec) both read.
//!
//! A value is bake's CSV form `type=registry,ref=…,mode=max` (keys and
//! values trimmed), or a bare image reference (`user/app:cache`), which
//! bake reads as `type=registry,ref=user/app:cache`.

/// One `key=value` of a cache value, with where its value starts in the
/// text (for located diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheAttr {
    pub key: String,
    pub value: String,
    /// Byte offset of `value` in the original text.
    pub at: usize,
}

/// A parsed cache value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// The backend (`registry`, `inline`, `local`, `gha`, ...); empty when
    /// the value names none.
    pub kind: String,
    /// Every attribute but `type`, in the order written.
    pub attrs: Vec<CacheAttr>,
}

impl CacheSpec {
    pub fn parse(text: &str) -> CacheSpec {
        if !text.contains('=') {
            return CacheSpec {
                kind: "registry".into(),
                attrs: vec![CacheAttr {
                    key: "ref".into(),
                    value: text.to_string(),
                    at: 0,
                }],
            };
        }
        let mut spec = CacheSpec {
            kind: String::new(),
            attrs: Vec::new(),
        };
        let mut at = 0;
        for part in text.split(',') {
            if let Some((k, v)) = part.split_once('=') {
                let value_at = at + k.len() + 1 + (v.len() - v.trim_start().len());
                match k.trim() {
                    "type" => spec.kind = v.trim().to_string(),
                    key => spec.attrs.push(CacheAttr {
                        key: key.to_string(),
                        value: v.trim().to_string(),
                        at: value_at,
                    }),
                }
            }
            at += part.len() + 1;
        }
        spec
    }

    /// The `ref=` values of a registry cache (`None`: not a registry cache;
    /// empty: a registry cache without `ref=`).
    pub fn registry_refs(&self) -> Option<Vec<&CacheAttr>> {
        (self.kind == "registry").then(|| self.attrs.iter().filter(|a| a.key == "ref").collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let bare = CacheSpec::parse("user/app:cache");
        assert_eq!(bare.kind, "registry");
        assert_eq!(bare.attrs[0].value, "user/app:cache");
        let csv = CacheSpec::parse("type=registry, ref = r/c:x ,mode=max");
        assert_eq!(csv.kind, "registry");
        let refs = csv.registry_refs().unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].value, "r/c:x");
        assert_eq!(
            &"type=registry, ref = r/c:x ,mode=max"[refs[0].at..][..5],
            "r/c:x"
        );
        assert_eq!(csv.attrs[1].key, "mode");
        assert_eq!(CacheSpec::parse("type=inline").registry_refs(), None);
        assert_eq!(
            CacheSpec::parse("type=registry,mode=max").registry_refs(),
            Some(vec![])
        );
        assert_eq!(CacheSpec::parse("mode=max").kind, "");
    }
}
