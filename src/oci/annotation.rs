//! Annotation keys as buildx writes them (`[type[platform,...]:]key`):
//! the level an `annotation` entry applies to. Read by the executor
//! (`manifest:` and un-prefixed keys go to BuildKit's image exporter) and
//! by the publish stage (`index:`, `manifest-descriptor:`).

use crate::oci::Platform;

/// The level an annotation applies to (buildx's annotation types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnotationLevel {
    /// `index:`: the index.
    Index,
    /// `manifest:`: the image manifests (written by BuildKit).
    Manifest,
    /// `manifest-descriptor:`: the descriptors of the image manifests in
    /// the index.
    ManifestDescriptor,
    /// `index-descriptor:`: the descriptor of the index (OCI layouts only).
    IndexDescriptor,
}

/// One annotation key, parsed: `[type[platform,...]:]key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationKey {
    /// The level given by the prefix; `None` for an un-prefixed key.
    pub level: Option<AnnotationLevel>,
    /// Platforms selected by `type[p1,p2]:`; empty: all.
    pub platforms: Vec<Platform>,
    /// The annotation key itself.
    pub key: String,
}

impl AnnotationKey {
    /// Parses a key of the `annotation` attribute. A prefix before the first
    /// `:` that is not a known type is part of the key.
    pub fn parse(text: &str) -> Result<AnnotationKey, String> {
        let plain = || AnnotationKey {
            level: None,
            platforms: Vec::new(),
            key: text.to_owned(),
        };
        let Some((prefix, key)) = text.split_once(':') else {
            return Ok(plain());
        };
        let (ty, selector) = match prefix.split_once('[') {
            Some((ty, rest)) => match rest.strip_suffix(']') {
                Some(sel) => (ty, Some(sel)),
                None => return Ok(plain()),
            },
            None => (prefix, None),
        };
        let level = match ty {
            "index" => AnnotationLevel::Index,
            "manifest" => AnnotationLevel::Manifest,
            "manifest-descriptor" => AnnotationLevel::ManifestDescriptor,
            "index-descriptor" => AnnotationLevel::IndexDescriptor,
            _ => return Ok(plain()),
        };
        if key.is_empty() {
            return Err(format!("annotation {text:?} has an empty key"));
        }
        let platforms = match selector {
            None => Vec::new(),
            Some(sel) => sel
                .split(',')
                .map(|p| Platform::parse(p).map_err(|e| format!("annotation {text:?}: {e}")))
                .collect::<Result<_, _>>()?,
        };
        Ok(AnnotationKey {
            level: Some(level),
            platforms,
            key: key.to_owned(),
        })
    }
}
