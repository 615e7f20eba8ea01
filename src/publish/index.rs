//! OCI image indexes: platforms, descriptors, annotations, flattening of
//! per-platform indexes (BuildKit's attestation layout) and deterministic
//! serialization.
//!
//! The index is always `application/vnd.oci.image.index.v1+json` with
//! `schemaVersion` 2 and `mediaType` set explicitly (distribution 2.8 picks
//! the handler from the `Content-Type`, and oci-client would otherwise send
//! the Docker list type). Serialization is compact JSON from structs with a
//! fixed field order (the order of the Go `ocispec` types) and sorted
//! annotation maps, so the same inputs always give the same bytes and
//! digest. Children appear in the order given: image manifests first, then
//! the attestation manifests in the order of the images they describe (as
//! BuildKit lays out a multi-platform index).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// `application/vnd.oci.image.index.v1+json`.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.manifest.v1+json`.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.docker.distribution.manifest.list.v2+json`.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// `application/vnd.docker.distribution.manifest.v2+json`.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in hash.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether a media type is an index or a manifest list.
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

pub use crate::oci::annotation::{AnnotationKey, AnnotationLevel};
pub use crate::oci::Platform;

/// A descriptor in an index is the one OCI descriptor type.
pub use crate::oci::descriptor::{
    Descriptor, ATTESTATION_MANIFEST, REFERENCE_DIGEST, REFERENCE_TYPE,
};

/// An OCI image index. Field order is the serialization order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIndex {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Always [`OCI_INDEX`] when built here.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The children.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Index annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A blob named by a manifest (config, layer, subject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// `sha256:...`.
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: i64,
    /// External URLs (foreign layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

impl BlobRef {
    /// Foreign / non-distributable layers are not stored by registries.
    pub fn is_foreign(&self) -> bool {
        self.media_type.contains("foreign") || self.media_type.contains("nondistributable")
    }
}

/// Any manifest document, read leniently: an image manifest has `config`
/// and `layers`, an index `manifests`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ManifestDoc {
    /// `schemaVersion`.
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: i64,
    /// `mediaType`, when present.
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    /// The config blob (image manifests).
    #[serde(default)]
    pub config: Option<BlobRef>,
    /// The layers (image manifests).
    #[serde(default)]
    pub layers: Vec<BlobRef>,
    /// The children (indexes).
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl ManifestDoc {
    /// Parses a manifest or index.
    pub fn parse(bytes: &[u8]) -> Result<ManifestDoc, String> {
        let doc: ManifestDoc =
            serde_json::from_slice(bytes).map_err(|e| format!("invalid manifest JSON: {e}"))?;
        if doc.schema_version != 2 {
            return Err(format!(
                "unsupported manifest schemaVersion {}",
                doc.schema_version
            ));
        }
        Ok(doc)
    }

    /// The blobs an image manifest needs in its repository (config and
    /// layers, foreign layers excepted).
    pub fn blobs(&self) -> Vec<BlobRef> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .filter(|b| !b.is_foreign())
            .cloned()
            .collect()
    }
}

/// A built index: the document and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltIndex {
    /// The document.
    pub index: ImageIndex,
    /// Its serialization (what is pushed and digested).
    pub bytes: Bytes,
    /// `sha256:` of the bytes.
    pub digest: String,
}

impl BuiltIndex {
    /// Serializes an index deterministically.
    pub fn new(index: ImageIndex) -> BuiltIndex {
        let bytes = Bytes::from(serde_json::to_vec(&index).expect("an index always serializes"));
        let digest = sha256_digest(&bytes);
        BuiltIndex {
            index,
            bytes,
            digest,
        }
    }

    /// The size in bytes.
    pub fn size(&self) -> i64 {
        self.bytes.len() as i64
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        std::str::from_utf8(&self.bytes).expect("serde_json writes UTF-8")
    }

    /// The descriptor of the index itself.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: OCI_INDEX.to_owned(),
            digest: self.digest.clone(),
            size: self.size(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }
}

/// Builds the OCI index of `children` (in the order given, images before
/// attestations: an attestation follows the images, ordered by its
/// subject's position) with `annotations` on the index.
pub fn build_index(children: Vec<Descriptor>, annotations: BTreeMap<String, String>) -> BuiltIndex {
    let (attestations, mut manifests): (Vec<_>, Vec<_>) =
        children.into_iter().partition(|c| c.is_attestation());
    let position = |digest: Option<&str>| {
        digest
            .and_then(|d| manifests.iter().position(|m: &Descriptor| m.digest == d))
            .unwrap_or(usize::MAX)
    };
    let mut attestations: Vec<(usize, usize, Descriptor)> = attestations
        .into_iter()
        .enumerate()
        .map(|(i, a)| (position(a.attestation_subject()), i, a))
        .collect();
    attestations.sort_by_key(|(p, i, _)| (*p, *i));
    manifests.extend(attestations.into_iter().map(|(_, _, a)| a));
    BuiltIndex::new(ImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_owned()),
        manifests,
        annotations,
    })
}

/// Keeps, out of a per-platform index (BuildKit's export when attestations
/// are on), the image manifest for `requested` and the attestation
/// manifests that describe it. The image keeps the platform the index gives
/// it (`requested` when it has none); attestations keep their platform
/// (`unknown/unknown`) and annotations.
pub fn flatten_platform_index(
    index: &ManifestDoc,
    requested: &Platform,
) -> Result<Vec<Descriptor>, String> {
    let images: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|m| !m.is_attestation())
        .collect();
    let chosen = images
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| p.matches(requested)))
        .copied()
        .or_else(|| match images.as_slice() {
            [only] if only.platform.is_none() => Some(*only),
            _ => None,
        })
        .ok_or_else(|| {
            let has: Vec<String> = images
                .iter()
                .map(|m| {
                    m.platform
                        .as_ref()
                        .map_or_else(|| "(no platform)".to_owned(), ToString::to_string)
                })
                .collect();
            format!(
                "the index has no image manifest for {requested} (it has: {})",
                if has.is_empty() {
                    "none".to_owned()
                } else {
                    has.join(", ")
                }
            )
        })?;
    let mut image = chosen.clone();
    if image.platform.is_none() {
        image.platform = Some(requested.clone());
    }
    let mut out = vec![image];
    out.extend(
        index
            .manifests
            .iter()
            .filter(|m| m.attestation_subject() == Some(chosen.digest.as_str()))
            .cloned(),
    );
    Ok(out)
}

/// Who is asking to split annotations: decides un-prefixed keys and the
/// levels that are not this stage's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationMode {
    /// A build's `annotation` attribute (`docker buildx bake` semantics):
    /// un-prefixed and `manifest:` keys are BuildKit's (applied to the image
    /// manifests by the executor) and `index-descriptor:` has no meaning for
    /// a registry push; the publish stage uses `index:` and
    /// `manifest-descriptor:` only.
    Build,
    /// `mybake index create --annotation` (`docker buildx imagetools
    /// create` semantics): un-prefixed keys go to the index; `manifest:` and
    /// `index-descriptor:` are errors.
    Create,
}

/// The annotations the publish stage applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexAnnotations {
    /// On the index.
    pub index: BTreeMap<String, String>,
    /// On the descriptors of the image manifests (platforms empty: all).
    pub descriptors: Vec<(Vec<Platform>, String, String)>,
}

impl IndexAnnotations {
    /// Splits the `annotation` key/values by level.
    pub fn split(
        annotations: &BTreeMap<String, String>,
        mode: AnnotationMode,
    ) -> Result<IndexAnnotations, String> {
        let mut out = IndexAnnotations::default();
        for (k, v) in annotations {
            let key = AnnotationKey::parse(k)?;
            let level = match (key.level, mode) {
                (None, AnnotationMode::Create) => AnnotationLevel::Index,
                (None, AnnotationMode::Build) => continue,
                (Some(l), _) => l,
            };
            match (level, mode) {
                (AnnotationLevel::Index, _) => {
                    if !key.platforms.is_empty() {
                        return Err(format!(
                            "annotation {k:?}: an index annotation cannot select platforms"
                        ));
                    }
                    out.index.insert(key.key, v.clone());
                }
                (AnnotationLevel::ManifestDescriptor, _) => {
                    out.descriptors.push((key.platforms, key.key, v.clone()))
                }
                (AnnotationLevel::Manifest | AnnotationLevel::IndexDescriptor, AnnotationMode::Build) => {}
                (AnnotationLevel::Manifest | AnnotationLevel::IndexDescriptor, AnnotationMode::Create) => {
                    return Err(format!(
                        "annotation {k:?}: only index and manifest-descriptor annotations can be set on an index"
                    ))
                }
            }
        }
        Ok(out)
    }

    /// Adds the descriptor annotations to the image manifests (not to
    /// attestations) whose platform is selected.
    pub fn apply_to(&self, entries: &mut [Descriptor]) {
        for entry in entries.iter_mut().filter(|e| !e.is_attestation()) {
            for (platforms, k, v) in &self.descriptors {
                let selected = platforms.is_empty()
                    || entry
                        .platform
                        .as_ref()
                        .is_some_and(|p| platforms.iter().any(|s| s.matches(p)));
                if selected {
                    entry.annotations.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn image(n: u8, platform: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: d(n),
            size: 100 + n as i64,
            annotations: BTreeMap::new(),
            platform: Some(Platform::parse(platform).unwrap()),
            artifact_type: None,
        }
    }

    fn attestation(n: u8, subject: u8) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: d(n),
            size: 500,
            annotations: BTreeMap::from([
                (REFERENCE_TYPE.to_owned(), ATTESTATION_MANIFEST.to_owned()),
                (REFERENCE_DIGEST.to_owned(), d(subject)),
            ]),
            platform: Some(Platform::unknown()),
            artifact_type: None,
        }
    }

    #[test]
    fn platform_parsing() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
            ("linux", "arm", Some("v7"))
        );
        assert_eq!(p.to_string(), "linux/arm/v7");
        let p = Platform::parse("linux/amd64").unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant),
            ("linux", "amd64", None)
        );
        assert_eq!(
            Platform::parse("linux/arm").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/aarch64").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("Linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/arm/6").unwrap().to_string(),
            "linux/arm/v6"
        );
        assert_eq!(
            Platform::parse("linux/armel").unwrap().to_string(),
            "linux/arm/v6"
        );
        assert_eq!(
            Platform::parse("linux/386").unwrap().to_string(),
            "linux/386"
        );
        assert_eq!(
            Platform::parse("linux/s390x").unwrap().to_string(),
            "linux/s390x"
        );
        for bad in [
            "linux",
            "",
            "linux/",
            "/amd64",
            "linux/arm/v7/x",
            "linux//v7",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert!(Platform::parse("linux/arm64").unwrap().matches(&Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            os_version: None,
            os_features: vec![],
            variant: Some("v8".into()),
        }));
        assert!(!Platform::parse("linux/arm/v6")
            .unwrap()
            .matches(&Platform::parse("linux/arm/v7").unwrap()));
        // Serialization: Go field order, variant only when set.
        assert_eq!(
            serde_json::to_string(&Platform::parse("linux/arm/v7").unwrap()).unwrap(),
            r#"{"architecture":"arm","os":"linux","variant":"v7"}"#
        );
    }

    #[test]
    fn index_json_is_deterministic() {
        let children = vec![
            image(1, "linux/amd64"),
            image(2, "linux/arm64"),
            image(3, "linux/arm/v7"),
        ];
        let ann = BTreeMap::from([
            (
                "org.opencontainers.image.title".to_owned(),
                "app".to_owned(),
            ),
            ("a.first".to_owned(), "1".to_owned()),
        ]);
        let a = build_index(children.clone(), ann.clone());
        let b = build_index(children.clone(), ann.clone());
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.digest, sha256_digest(&a.bytes));
        let text = a.json();
        assert!(text.starts_with(&format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":101,"platform":{{"architecture":"amd64","os":"linux"}}}}"#,
            d(1)
        )), "{text}");
        assert!(
            text.ends_with(
                r#""annotations":{"a.first":"1","org.opencontainers.image.title":"app"}}"#
            ),
            "{text}"
        );
        assert!(!text.contains(' ') && !text.contains('\n'));

        // The order given is the order written.
        let mut reversed = children.clone();
        reversed.reverse();
        let r = build_index(reversed, ann);
        assert_ne!(r.digest, a.digest);
        let platforms: Vec<String> = r
            .index
            .manifests
            .iter()
            .map(|m| m.platform.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(platforms, ["linux/arm/v7", "linux/arm64", "linux/amd64"]);
        // Round trip.
        let parsed: ImageIndex = serde_json::from_slice(&a.bytes).unwrap();
        assert_eq!(BuiltIndex::new(parsed).bytes, a.bytes);
    }

    #[test]
    fn attestations_follow_images() {
        let built = build_index(
            vec![
                image(1, "linux/amd64"),
                attestation(11, 1),
                image(2, "linux/arm64"),
                attestation(12, 2),
            ],
            BTreeMap::new(),
        );
        let digests: Vec<&str> = built
            .index
            .manifests
            .iter()
            .map(|m| m.digest.as_str())
            .collect();
        assert_eq!(digests, [d(1), d(2), d(11), d(12)]);
        assert!(built
            .json()
            .contains(r#""annotations":{"vnd.docker.reference.digest""#));
    }

    #[test]
    fn flattening() {
        let mut amd = image(1, "linux/amd64");
        amd.platform.as_mut().unwrap().os_version = Some("10.0".into());
        let doc = ManifestDoc {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                amd.clone(),
                attestation(11, 1),
                image(2, "linux/arm64"),
                attestation(12, 2),
            ],
            ..ManifestDoc::default()
        };
        let flat = flatten_platform_index(&doc, &Platform::parse("linux/amd64").unwrap()).unwrap();
        assert_eq!(flat, vec![amd, attestation(11, 1)]);
        let flat =
            flatten_platform_index(&doc, &Platform::parse("linux/arm64/v8").unwrap()).unwrap();
        assert_eq!(flat, vec![image(2, "linux/arm64"), attestation(12, 2)]);
        let err =
            flatten_platform_index(&doc, &Platform::parse("linux/arm/v7").unwrap()).unwrap_err();
        assert!(
            err.contains("linux/arm/v7") && err.contains("linux/amd64"),
            "{err}"
        );

        // A lone image without platform takes the requested one.
        let mut bare = image(3, "linux/amd64");
        bare.platform = None;
        let doc = ManifestDoc {
            schema_version: 2,
            manifests: vec![bare, attestation(13, 3)],
            ..ManifestDoc::default()
        };
        let flat = flatten_platform_index(&doc, &Platform::parse("linux/arm/v7").unwrap()).unwrap();
        assert_eq!(
            flat[0].platform,
            Some(Platform::parse("linux/arm/v7").unwrap())
        );
        assert_eq!(flat.len(), 2);
    }

    #[test]
    fn annotation_prefixes() {
        let k = AnnotationKey::parse("index:org.opencontainers.image.description").unwrap();
        assert_eq!(k.level, Some(AnnotationLevel::Index));
        assert_eq!(k.key, "org.opencontainers.image.description");
        let k = AnnotationKey::parse("manifest-descriptor[linux/amd64,linux/arm/v7]:a.b").unwrap();
        assert_eq!(k.level, Some(AnnotationLevel::ManifestDescriptor));
        assert_eq!(k.platforms.len(), 2);
        assert_eq!(k.key, "a.b");
        let k = AnnotationKey::parse("org.example.plain").unwrap();
        assert_eq!((k.level, k.key.as_str()), (None, "org.example.plain"));
        // Unknown prefix: part of the key.
        let k = AnnotationKey::parse("com.example:thing").unwrap();
        assert_eq!((k.level, k.key.as_str()), (None, "com.example:thing"));
        assert!(AnnotationKey::parse("index:").is_err());
        assert!(AnnotationKey::parse("manifest-descriptor[linux]:x").is_err());

        let map = BTreeMap::from([
            (
                "index:org.opencontainers.image.description".to_owned(),
                "API".to_owned(),
            ),
            (
                "org.opencontainers.image.title".to_owned(),
                "api".to_owned(),
            ),
            ("manifest:m".to_owned(), "1".to_owned()),
            (
                "manifest-descriptor[linux/arm64]:d".to_owned(),
                "arm".to_owned(),
            ),
            ("index-descriptor:x".to_owned(), "y".to_owned()),
        ]);
        let build = IndexAnnotations::split(&map, AnnotationMode::Build).unwrap();
        assert_eq!(
            build.index,
            BTreeMap::from([(
                "org.opencontainers.image.description".to_owned(),
                "API".to_owned()
            )])
        );
        assert_eq!(build.descriptors.len(), 1);
        let mut entries = vec![
            image(1, "linux/amd64"),
            image(2, "linux/arm64"),
            attestation(12, 2),
        ];
        build.apply_to(&mut entries);
        assert!(entries[0].annotations.is_empty());
        assert_eq!(
            entries[1].annotations.get("d").map(String::as_str),
            Some("arm")
        );
        assert!(!entries[2].annotations.contains_key("d"));

        // index create: un-prefixed → index; manifest: is refused.
        assert!(IndexAnnotations::split(&map, AnnotationMode::Create).is_err());
        let map = BTreeMap::from([
            ("index:a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]);
        let create = IndexAnnotations::split(&map, AnnotationMode::Create).unwrap();
        assert_eq!(
            create.index,
            BTreeMap::from([
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ])
        );
    }
}
