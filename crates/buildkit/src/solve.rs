//! `Control.Solve` with progress from `Control.Status`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine as _;
use bollard_buildkit_proto::moby::buildkit::v1 as api;
use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::control::Client;
use crate::error::{Error, Result};
use crate::session::new_id;
use crate::status::{StatusEvent, StatusTracker};

/// How long status events are still forwarded after `Solve` returned
/// (BuildKit's client waits 3 s too).
pub(crate) const STATUS_DRAIN: Duration = Duration::from_secs(3);

/// Response key: digest of the exported root manifest or index.
pub const EXPORTER_IMAGE_DIGEST: &str = "containerimage.digest";
/// Response key: base64 JSON OCI descriptor of the exported image (v0.10+).
pub const EXPORTER_IMAGE_DESCRIPTOR: &str = "containerimage.descriptor";
/// Response key: digest of the image config.
pub const EXPORTER_IMAGE_CONFIG_DIGEST: &str = "containerimage.config.digest";
/// Response key: exported image name(s), comma separated.
pub const EXPORTER_IMAGE_NAME: &str = "image.name";

/// An exporter (`image`, `oci`, `docker`, `local`, `tar`, `moby`) and its
/// attributes (`name`, `push`, `push-by-digest`, `registry.insecure`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exporter {
    /// Exporter type, e.g. `image`.
    pub kind: String,
    /// Exporter attributes.
    pub attrs: HashMap<String, String>,
}

impl Exporter {
    /// An exporter of type `kind` without attributes.
    pub fn new(kind: impl Into<String>) -> Self {
        Exporter {
            kind: kind.into(),
            attrs: HashMap::new(),
        }
    }

    /// Adds an attribute.
    pub fn attr(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attrs.insert(key.into(), value.into());
        self
    }
}

/// A cache import or export (`registry`, `inline`, `gha`, `s3`, ...) with
/// its attributes (`ref`, `mode`, ...). The `local` type needs a content
/// store on the session, which this crate does not serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheEntry {
    /// Cache backend type, e.g. `registry`.
    pub kind: String,
    /// Backend attributes, e.g. `ref=registry/app:cache`.
    pub attrs: HashMap<String, String>,
}

impl CacheEntry {
    /// A cache entry of type `kind` without attributes.
    pub fn new(kind: impl Into<String>) -> Self {
        CacheEntry {
            kind: kind.into(),
            attrs: HashMap::new(),
        }
    }

    /// Adds an attribute.
    pub fn attr(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attrs.insert(key.into(), value.into());
        self
    }
}

/// What to build and where to put it.
#[derive(Debug, Clone, Default)]
pub struct SolveRequest {
    /// Unique build reference, shared by `Solve` and `Status`; empty picks a
    /// random one.
    pub reference: String,
    /// LLB to solve; leave `None` when using a frontend.
    pub definition: Option<pb::Definition>,
    /// Frontend, e.g. `dockerfile.v0`; empty for a plain LLB solve.
    pub frontend: String,
    /// Frontend options (`filename`, `target`, `platform`, `build-arg:X`, ...).
    pub frontend_attrs: HashMap<String, String>,
    /// LLB inputs for the frontend (named contexts built in memory).
    pub frontend_inputs: HashMap<String, pb::Definition>,
    /// Exporters; the first one is also sent in the pre-v0.13 fields.
    pub exporters: Vec<Exporter>,
    /// Id of the attached session ([`crate::session::SessionHandle::id`]);
    /// empty for none.
    pub session_id: String,
    /// Cache sources.
    pub cache_imports: Vec<CacheEntry>,
    /// Cache destinations.
    pub cache_exports: Vec<CacheEntry>,
    /// Entitlements such as `network.host`, `security.insecure`.
    pub entitlements: Vec<String>,
    /// Keep the solve out of the builder's build history (BuildKit's
    /// `Internal`). Recording a history record happens before `Solve`
    /// returns and takes containerd lease and content writes; under many
    /// concurrent solves it delays each return by seconds
    /// (moby/buildkit#3726, #4327).
    pub internal: bool,
}

impl SolveRequest {
    /// The protobuf request, with `reference` as its `Ref`.
    pub fn to_proto(&self, reference: &str) -> api::SolveRequest {
        let exporters: Vec<api::Exporter> = self
            .exporters
            .iter()
            .map(|e| api::Exporter {
                r#type: e.kind.clone(),
                attrs: e.attrs.clone(),
            })
            .collect();
        let (exporter_deprecated, exporter_attrs_deprecated) = self
            .exporters
            .first()
            .map(|e| (e.kind.clone(), e.attrs.clone()))
            .unwrap_or_default();

        let mut frontend_attrs = self.frontend_attrs.clone();
        if !self.frontend.is_empty()
            && !self.cache_imports.is_empty()
            && !frontend_attrs.contains_key("cache-imports")
        {
            // Frontends resolve cache imports themselves; BuildKit's client
            // passes them as JSON in this attribute.
            frontend_attrs.insert(
                "cache-imports".into(),
                cache_imports_json(&self.cache_imports),
            );
        }
        let cache_entry = |e: &CacheEntry| api::CacheOptionsEntry {
            r#type: e.kind.clone(),
            attrs: e.attrs.clone(),
        };
        api::SolveRequest {
            r#ref: reference.to_owned(),
            definition: self.definition.clone(),
            exporter_deprecated,
            exporter_attrs_deprecated,
            session: self.session_id.clone(),
            frontend: self.frontend.clone(),
            frontend_attrs,
            cache: Some(api::CacheOptions {
                exports: self.cache_exports.iter().map(cache_entry).collect(),
                imports: self.cache_imports.iter().map(cache_entry).collect(),
                ..api::CacheOptions::default()
            }),
            entitlements: self.entitlements.clone(),
            frontend_inputs: self.frontend_inputs.clone(),
            exporters,
            internal: self.internal,
            ..api::SolveRequest::default()
        }
    }
}

/// `[{"Type":"registry","Attrs":{"ref":"..."}}]`, the JSON form of
/// `[]*controlapi.CacheOptionsEntry` that frontends parse.
pub(crate) fn cache_imports_json(entries: &[CacheEntry]) -> String {
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        #[serde(rename = "Type")]
        kind: &'a str,
        #[serde(rename = "Attrs")]
        attrs: BTreeMap<&'a str, &'a str>,
    }
    let entries: Vec<Entry<'_>> = entries
        .iter()
        .map(|e| Entry {
            kind: &e.kind,
            attrs: e
                .attrs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        })
        .collect();
    serde_json::to_string(&entries).unwrap_or_else(|_| "[]".to_owned())
}

/// The result of a solve: the exporters' response map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SolveResponse {
    /// `ExporterResponse` as sent by the daemon.
    pub exporter_response: HashMap<String, String>,
}

/// An OCI content descriptor (from `containerimage.descriptor`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Descriptor {
    /// Media type, e.g. `application/vnd.oci.image.index.v1+json`.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:...`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl SolveResponse {
    /// `containerimage.digest`: the exported root manifest or index.
    pub fn image_digest(&self) -> Option<&str> {
        self.exporter_response
            .get(EXPORTER_IMAGE_DIGEST)
            .map(String::as_str)
    }

    /// `containerimage.descriptor`, decoded; `None` when absent (BuildKit
    /// before v0.10 or no image exporter), `Some(Err)` when malformed.
    pub fn image_descriptor(&self) -> Option<std::result::Result<Descriptor, String>> {
        let encoded = self.exporter_response.get(EXPORTER_IMAGE_DESCRIPTOR)?;
        Some(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("{EXPORTER_IMAGE_DESCRIPTOR}: invalid base64: {e}"))
                .and_then(|json| {
                    serde_json::from_slice(&json)
                        .map_err(|e| format!("{EXPORTER_IMAGE_DESCRIPTOR}: invalid JSON: {e}"))
                }),
        )
    }
}

impl Client {
    /// Runs a build. Progress is sent to `status` (if given) while the build
    /// runs; a slow receiver slows status delivery, never the build, and a
    /// dropped receiver is ignored.
    ///
    /// Dropping the returned future cancels the build (the `Solve` RPC is
    /// cancelled, and BuildKit cancels the job with it).
    pub async fn solve(
        &self,
        request: SolveRequest,
        status: Option<mpsc::Sender<StatusEvent>>,
    ) -> Result<SolveResponse> {
        let reference = if request.reference.is_empty() {
            new_id()
        } else {
            request.reference.clone()
        };
        let proto = request.to_proto(&reference);

        let mut control = self.control();
        let solve = async move { control.solve(proto).await };
        let progress = forward_status(self.control(), reference, status);
        tokio::pin!(solve, progress);

        let mut progress_done = false;
        let result = loop {
            tokio::select! {
                result = &mut solve => break result,
                () = &mut progress, if !progress_done => progress_done = true,
            }
        };
        if !progress_done {
            // Let the last vertex updates (including errors) through.
            let _ = tokio::time::timeout(STATUS_DRAIN, progress).await;
        }
        match result {
            Ok(response) => Ok(SolveResponse {
                exporter_response: response.into_inner().exporter_response,
            }),
            Err(status) => Err(Error::solve(status)),
        }
    }

    /// [`Client::solve`] that stops with [`Error::Cancelled`] as soon as
    /// `cancel` fires (cancelling the build on the daemon).
    pub async fn solve_with_cancel(
        &self,
        request: SolveRequest,
        status: Option<mpsc::Sender<StatusEvent>>,
        cancel: CancellationToken,
    ) -> Result<SolveResponse> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(Error::Cancelled),
            result = self.solve(request, status) => result,
        }
    }
}

/// Streams `Control.Status{ref}` into `sink` until the daemon ends it.
/// Errors of the status stream are not fatal to the build and are dropped.
pub(crate) async fn forward_status(
    mut control: ControlClient<Channel>,
    reference: String,
    sink: Option<mpsc::Sender<StatusEvent>>,
) {
    let Some(sink) = sink else {
        return;
    };
    let request = api::StatusRequest { r#ref: reference };
    let Ok(response) = control.status(request).await else {
        return;
    };
    let mut stream = response.into_inner();
    let mut tracker = StatusTracker::new();
    while let Ok(Some(update)) = stream.message().await {
        for event in tracker.update(&update) {
            if sink.send(event).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporters_fill_both_old_and_new_fields() {
        let request = SolveRequest {
            frontend: "dockerfile.v0".into(),
            exporters: vec![
                Exporter::new("image")
                    .attr("name", "localhost:5000/app")
                    .attr("push", "true"),
                Exporter::new("local").attr("dest", "/out"),
            ],
            session_id: "sess".into(),
            cache_imports: vec![CacheEntry::new("registry").attr("ref", "localhost:5000/app:cache")],
            cache_exports: vec![CacheEntry::new("inline")],
            ..SolveRequest::default()
        };
        let proto = request.to_proto("ref1");
        assert_eq!(proto.r#ref, "ref1");
        assert_eq!(proto.session, "sess");
        assert_eq!(proto.exporter_deprecated, "image");
        assert_eq!(proto.exporter_attrs_deprecated["push"], "true");
        assert_eq!(proto.exporters.len(), 2);
        assert_eq!(proto.exporters[1].r#type, "local");
        let cache = proto.cache.unwrap();
        assert_eq!(cache.imports[0].attrs["ref"], "localhost:5000/app:cache");
        assert_eq!(cache.exports[0].r#type, "inline");
        assert_eq!(
            proto.frontend_attrs["cache-imports"],
            r#"[{"Type":"registry","Attrs":{"ref":"localhost:5000/app:cache"}}]"#
        );
    }

    #[test]
    fn no_exporter_leaves_fields_empty() {
        let proto = SolveRequest::default().to_proto("r");
        assert!(proto.exporter_deprecated.is_empty());
        assert!(proto.exporters.is_empty());
        assert!(!proto.frontend_attrs.contains_key("cache-imports"));
    }

    #[test]
    fn descriptor_decoding() {
        let json = r#"{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:abc","size":856}"#;
        let response = SolveResponse {
            exporter_response: HashMap::from([
                (
                    EXPORTER_IMAGE_DESCRIPTOR.to_owned(),
                    base64::engine::general_purpose::STANDARD.encode(json),
                ),
                (EXPORTER_IMAGE_DIGEST.to_owned(), "sha256:abc".to_owned()),
            ]),
        };
        assert_eq!(response.image_digest(), Some("sha256:abc"));
        let desc = response.image_descriptor().unwrap().unwrap();
        assert_eq!(desc.media_type, "application/vnd.oci.image.index.v1+json");
        assert_eq!(desc.size, 856);
        let bad = SolveResponse {
            exporter_response: HashMap::from([(
                EXPORTER_IMAGE_DESCRIPTOR.to_owned(),
                "!!".to_owned(),
            )]),
        };
        assert!(bad.image_descriptor().unwrap().is_err());
    }
}
