//! The one OCI descriptor type: what a solve returns for a result, an
//! entry of an image index, an `index.json` entry of an OCI layout.
//!
//! Boundaries convert to and from it and nowhere else: BuildKit's wire
//! data (`mybake_buildkit::Descriptor`, decoded from the solve response by
//! the BuildKit client crate, which cannot depend on this one) in exec,
//! and oci-client's `OciDescriptor`, the type its blob and manifest calls
//! take, in `publish/registry`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Platform;

/// The annotation BuildKit marks attestation manifests with.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Its value for attestation manifests.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// The annotation naming the image manifest an attestation describes.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// A content descriptor. Field order is the serialization order (Go's
/// `ocispec.Descriptor`); unknown fields of descriptors read from a
/// registry are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:...`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Artifact type.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// Whether this is a BuildKit attestation manifest.
    pub fn is_attestation(&self) -> bool {
        self.annotations.get(REFERENCE_TYPE).map(String::as_str) == Some(ATTESTATION_MANIFEST)
    }

    /// The digest of the image manifest an attestation describes.
    pub fn attestation_subject(&self) -> Option<&str> {
        if self.is_attestation() {
            self.annotations.get(REFERENCE_DIGEST).map(String::as_str)
        } else {
            None
        }
    }

    /// The same descriptor for `platform`.
    pub fn with_platform(&self, platform: Option<Platform>) -> Self {
        Descriptor {
            platform,
            ..self.clone()
        }
    }
}

/// BuildKit's wire descriptor (a solve's `containerimage.descriptor`).
impl From<&mybake_buildkit::Descriptor> for Descriptor {
    fn from(d: &mybake_buildkit::Descriptor) -> Self {
        Descriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
            annotations: d.annotations.clone(),
            platform: None,
            artifact_type: None,
        }
    }
}
