//! Gateway builds: a solve whose frontend is called through BuildKit's LLB
//! bridge (`moby.buildkit.v1.frontend.LLBBridge`) by this client, as
//! BuildKit's Go client does in `Client.Build` and buildx for every build.
//!
//! `Control.Solve` is sent with no frontend and no definition, so BuildKit
//! registers the build with its gateway forwarder and waits; the bridge's
//! `Solve` (carrying the build's ref in the `buildkit-controlapi-buildid`
//! metadata) runs the real frontend and, with `AllowResultReturn`, answers
//! with the result's LLB definition and metadata (the image config). The
//! client hands that back with `Return`, and BuildKit exports it with the
//! `Control.Solve`'s exporters. In between, the definition is what another
//! solve on the same daemon can take as a frontend input (`context:NAME =
//! input:NAME`), which is how bake passes a `target:` context in memory.

use std::collections::HashMap;

use base64::Engine as _;
use bollard_buildkit_proto::google::rpc::Status as RpcStatus;
use bollard_buildkit_proto::moby::buildkit::v1::frontend as gw;
use bollard_buildkit_proto::moby::buildkit::v1::frontend::llb_bridge_client::LlbBridgeClient;
use bollard_buildkit_proto::pb;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;

use crate::control::Client;
use crate::error::{Error, Result};
use crate::session::new_id;
use crate::solve::{cache_imports_json, forward_status, SolveRequest, SolveResponse, STATUS_DRAIN};
use crate::status::StatusEvent;

/// gRPC metadata that names the build a bridge call belongs to.
const BUILD_ID_HEADER: &str = "buildkit-controlapi-buildid";

/// Result metadata key of the image config (`exptypes.ExporterImageConfigKey`).
pub const IMAGE_CONFIG_KEY: &str = "containerimage.config";

/// How often a bridge call is retried while BuildKit has not registered
/// the build yet (its forwarder waits 3 s per call).
const REGISTER_ATTEMPTS: u32 = 5;

/// A build result as LLB: what another solve on the same daemon takes as a
/// frontend input.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontendInput {
    /// The result's LLB definition.
    pub definition: pb::Definition,
    /// The result's image config (JSON), when the frontend produced one.
    pub image_config: Option<Vec<u8>>,
}

impl FrontendInput {
    /// Makes this result the named context `name` of a Dockerfile solve:
    /// `context:NAME=input:NAME`, the definition as input `NAME`, and the
    /// image config as `input-metadata:NAME` (a JSON object whose values are
    /// base64, Go's encoding of `map[string][]byte`), as buildx does.
    pub fn bind(
        &self,
        name: &str,
        attrs: &mut HashMap<String, String>,
        inputs: &mut HashMap<String, pb::Definition>,
    ) {
        attrs.insert(format!("context:{name}"), format!("input:{name}"));
        inputs.insert(name.to_owned(), self.definition.clone());
        if let Some(config) = &self.image_config {
            let meta = serde_json::json!({
                IMAGE_CONFIG_KEY: base64::engine::general_purpose::STANDARD.encode(config),
            });
            attrs.insert(format!("input-metadata:{name}"), meta.to_string());
        }
    }
}

/// What [`Client::solve_gateway`] reports as soon as the frontend's result
/// is built, before it is exported.
pub type InputSender = oneshot::Sender<FrontendInput>;

/// How the bridge part of a gateway build ended.
enum BridgeEnd {
    /// The result went back to the build.
    Returned(FrontendInput),
    /// The frontend failed and its error went back to the build, which
    /// now fails with it.
    FailedReturned(Error),
    /// The bridge could not be used; the build was never answered.
    Broken(Error),
}

impl Client {
    /// Runs `request` (a frontend solve, e.g. `dockerfile.v0`) as a gateway
    /// build: the frontend's result is built first (`Evaluate`), sent on
    /// `input` as LLB, and then exported with the request's exporters. The
    /// response is the export's, as from [`Client::solve`].
    ///
    /// The outer `Control.Solve` carries only the `attest:*` attributes
    /// (BuildKit's attestation processors read them there, as BuildKit's
    /// Go client sends them); the frontend gets all of them.
    pub async fn solve_gateway(
        &self,
        request: SolveRequest,
        status: Option<mpsc::Sender<StatusEvent>>,
        input: Option<InputSender>,
        cancel: CancellationToken,
    ) -> Result<SolveResponse> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(Error::Cancelled),
            result = self.gateway(request, status, input) => result,
        }
    }

    async fn gateway(
        &self,
        request: SolveRequest,
        status: Option<mpsc::Sender<StatusEvent>>,
        input: Option<InputSender>,
    ) -> Result<SolveResponse> {
        let reference = if request.reference.is_empty() {
            new_id()
        } else {
            request.reference.clone()
        };
        let mut frontend_opt = request.frontend_attrs.clone();
        if !request.cache_imports.is_empty() && !frontend_opt.contains_key("cache-imports") {
            frontend_opt.insert(
                "cache-imports".into(),
                cache_imports_json(&request.cache_imports),
            );
        }
        let bridge_request = gw::SolveRequest {
            frontend: request.frontend.clone(),
            frontend_opt,
            frontend_inputs: request.frontend_inputs.clone(),
            allow_result_return: true,
            // Without it the daemon answers with ref ids only, no LLB.
            allow_result_array_ref: true,
            evaluate: true,
            ..gw::SolveRequest::default()
        };
        let outer = SolveRequest {
            frontend: String::new(),
            definition: None,
            frontend_inputs: HashMap::new(),
            frontend_attrs: request
                .frontend_attrs
                .iter()
                .filter(|(k, _)| k.starts_with("attest:"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..request
        };
        let proto = outer.to_proto(&reference);
        let mut control = self.control();
        let solve = async move { control.solve(proto).await };
        let progress = forward_status(self.control(), reference.clone(), status);
        let bridge = self.bridge(&reference, bridge_request);
        tokio::pin!(solve, progress, bridge);

        let mut input = input;
        let mut bridge_failure = None;
        let mut bridge_done = false;
        let mut progress_done = false;
        let result = loop {
            tokio::select! {
                result = &mut solve => break result,
                end = &mut bridge, if !bridge_done => {
                    bridge_done = true;
                    match end {
                        BridgeEnd::Returned(built) => {
                            if let Some(tx) = input.take() {
                                let _ = tx.send(built);
                            }
                        }
                        BridgeEnd::FailedReturned(e) => bridge_failure = Some(e),
                        // Nobody will answer the build: stop it (dropping the
                        // `Solve` call cancels it on the daemon).
                        BridgeEnd::Broken(e) => return Err(e),
                    }
                }
                () = &mut progress, if !progress_done => progress_done = true,
            }
        };
        if result.is_ok() && !bridge_done {
            // The build ended on the result it was given: the answer to
            // `Return` may arrive after `Solve`'s.
            match bridge.await {
                BridgeEnd::Returned(built) => {
                    if let Some(tx) = input.take() {
                        let _ = tx.send(built);
                    }
                }
                BridgeEnd::FailedReturned(e) | BridgeEnd::Broken(e) => bridge_failure = Some(e),
            }
        }
        if !progress_done {
            let _ = tokio::time::timeout(STATUS_DRAIN, progress).await;
        }
        match result {
            Ok(response) => {
                if let Some(e) = bridge_failure {
                    return Err(e);
                }
                Ok(SolveResponse {
                    exporter_response: response.into_inner().exporter_response,
                })
            }
            Err(status) => Err(Error::solve(status)),
        }
    }

    /// The bridge side of a gateway build: run the frontend, then hand its
    /// result (or error) back to the build.
    async fn bridge(&self, reference: &str, request: gw::SolveRequest) -> BridgeEnd {
        let Ok(build_id) = BuildId::try_from(reference) else {
            return BridgeEnd::Broken(Error::Session(format!(
                "invalid build reference {reference:?}"
            )));
        };
        let mut bridge = LlbBridgeClient::new(self.channel())
            .max_decoding_message_size(crate::control::MAX_MESSAGE_SIZE)
            .max_encoding_message_size(crate::control::MAX_MESSAGE_SIZE);
        let mut attempt = 1;
        let solved = loop {
            match bridge.solve(with_id(request.clone(), &build_id)).await {
                // The forwarder has not seen the build yet ("no such job"):
                // `Control.Solve` registers it first thing, so try again.
                Err(s) if is_unregistered(&s) && attempt < REGISTER_ATTEMPTS => attempt += 1,
                other => break other,
            }
        };
        let returned = |r: std::result::Result<
            tonic::Response<gw::ReturnResponse>,
            tonic::Status,
        >| { r.map_err(|s| Error::rpc("LLBBridge.Return", s)) };
        match solved {
            Ok(response) => {
                let Some(result) = response.into_inner().result else {
                    return self_fail(&mut bridge, &build_id, "the frontend returned no result")
                        .await;
                };
                // One result, or a map of one platform's result (a frontend
                // building for a list of platforms).
                let (definition, config_key) = match &result.result {
                    Some(gw::result::Result::Ref(r)) => {
                        (r.def.clone(), IMAGE_CONFIG_KEY.to_owned())
                    }
                    Some(gw::result::Result::Refs(m)) if m.refs.len() == 1 => {
                        let (platform, r) = m.refs.iter().next().expect("one entry");
                        (r.def.clone(), format!("{IMAGE_CONFIG_KEY}/{platform}"))
                    }
                    _ => (None, String::new()),
                };
                let image_config = result
                    .metadata
                    .get(&config_key)
                    .or_else(|| result.metadata.get(IMAGE_CONFIG_KEY))
                    .cloned();
                let Some(mut definition) = definition else {
                    return self_fail(
                        &mut bridge,
                        &build_id,
                        "the frontend's result has no single LLB definition",
                    )
                    .await;
                };
                without_empty_locations(&mut definition);
                let back = bridge
                    .r#return(with_id(
                        gw::ReturnRequest {
                            result: Some(result),
                            error: None,
                        },
                        &build_id,
                    ))
                    .await;
                match returned(back) {
                    Ok(_) => BridgeEnd::Returned(FrontendInput {
                        definition,
                        image_config,
                    }),
                    Err(e) => BridgeEnd::Broken(e),
                }
            }
            Err(status) if is_unregistered(&status) => {
                BridgeEnd::Broken(Error::rpc("LLBBridge.Solve", status))
            }
            Err(status) => {
                let back = bridge
                    .r#return(with_id(
                        gw::ReturnRequest {
                            result: None,
                            error: Some(rpc_status(&status)),
                        },
                        &build_id,
                    ))
                    .await;
                match returned(back) {
                    Ok(_) => BridgeEnd::FailedReturned(Error::solve(status)),
                    // The build still waits: report the frontend's error.
                    Err(_) => BridgeEnd::Broken(Error::solve(status)),
                }
            }
        }
    }
}

/// A bridge request of the build `build_id`.
fn with_id<T>(message: T, build_id: &BuildId) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(BUILD_ID_HEADER, build_id.clone());
    r
}

type BuildId = MetadataValue<tonic::metadata::Ascii>;

/// Fails the build with `message` (a result this client cannot use).
async fn self_fail(
    bridge: &mut LlbBridgeClient<tonic::transport::Channel>,
    build_id: &BuildId,
    message: &str,
) -> BridgeEnd {
    let status = tonic::Status::internal(message);
    let back = bridge
        .r#return(with_id(
            gw::ReturnRequest {
                result: None,
                error: Some(rpc_status(&status)),
            },
            build_id,
        ))
        .await;
    let e = Error::solve(status);
    match back {
        Ok(_) => BridgeEnd::FailedReturned(e),
        Err(_) => BridgeEnd::Broken(e),
    }
}

/// Drops the source-map entries that list no location, in `def` and the
/// definitions its source maps carry. BuildKit sends them (a Dockerfile's
/// source map has one for its own load step); prost leaves an empty message
/// out of a map entry when encoding, so the daemon would decode the entry
/// as a nil pointer, and BuildKit v0.13's `llb.NewDefinitionOp`
/// dereferences it while reading a frontend input: Docker Engine 26.1
/// crashes. An empty entry says nothing, so dropping it changes nothing.
pub fn without_empty_locations(def: &mut pb::Definition) {
    if let Some(source) = def.source.as_mut() {
        source.locations.retain(|_, l| !l.locations.is_empty());
        for info in &mut source.infos {
            if let Some(inner) = info.definition.as_mut() {
                without_empty_locations(inner);
            }
        }
    }
}

/// BuildKit's answer when the build id is not (yet) registered.
fn is_unregistered(s: &tonic::Status) -> bool {
    s.message().contains("no such job")
}

/// A gRPC status as `google.rpc.Status`, with the daemon's details (they
/// carry BuildKit's typed errors: the failed step, the Dockerfile source
/// location), so the build fails with the frontend's error as it was.
fn rpc_status(status: &tonic::Status) -> RpcStatus {
    if !status.details().is_empty() {
        if let Ok(decoded) = RpcStatus::decode(status.details()) {
            return decoded;
        }
    }
    RpcStatus {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_names_the_input_and_its_image_config() {
        let input = FrontendInput {
            definition: pb::Definition::default(),
            image_config: Some(br#"{"config":{}}"#.to_vec()),
        };
        let (mut attrs, mut inputs) = (HashMap::new(), HashMap::new());
        input.bind("base", &mut attrs, &mut inputs);
        assert_eq!(attrs["context:base"], "input:base");
        assert!(inputs.contains_key("base"));
        let meta: serde_json::Value = serde_json::from_str(&attrs["input-metadata:base"]).unwrap();
        let config = base64::engine::general_purpose::STANDARD
            .decode(meta[IMAGE_CONFIG_KEY].as_str().unwrap())
            .unwrap();
        assert_eq!(config, br#"{"config":{}}"#);

        let bare = FrontendInput {
            image_config: None,
            ..input
        };
        let (mut attrs, mut inputs) = (HashMap::new(), HashMap::new());
        bare.bind("x", &mut attrs, &mut inputs);
        assert!(!attrs.contains_key("input-metadata:x"));
    }

    #[test]
    fn empty_source_locations_are_dropped_at_every_level() {
        let location = pb::Location {
            source_index: 0,
            ranges: Vec::new(),
        };
        let source = |inner: Option<pb::Definition>| pb::Source {
            locations: [
                ("sha256:a".to_owned(), pb::Locations::default()),
                (
                    "sha256:b".to_owned(),
                    pb::Locations {
                        locations: vec![location.clone()],
                    },
                ),
            ]
            .into_iter()
            .collect(),
            infos: vec![pb::SourceInfo {
                filename: "Dockerfile".into(),
                definition: inner,
                ..pb::SourceInfo::default()
            }],
        };
        let inner = pb::Definition {
            source: Some(source(None)),
            ..pb::Definition::default()
        };
        let mut def = pb::Definition {
            def: vec![vec![1, 2]],
            source: Some(source(Some(inner))),
            ..pb::Definition::default()
        };
        without_empty_locations(&mut def);
        let outer = def.source.as_ref().unwrap();
        assert_eq!(outer.locations.keys().collect::<Vec<_>>(), ["sha256:b"]);
        let nested = outer.infos[0].definition.as_ref().unwrap();
        let nested = nested.source.as_ref().unwrap();
        assert_eq!(nested.locations.keys().collect::<Vec<_>>(), ["sha256:b"]);
        // What the daemon decodes: every entry still has its value.
        let bytes = def.encode_to_vec();
        assert_eq!(pb::Definition::decode(&bytes[..]).unwrap(), def);
        assert_eq!(def.def, vec![vec![1, 2]]);
    }

    #[test]
    fn returned_errors_keep_their_details() {
        let inner = RpcStatus {
            code: 2,
            message: "process \"/bin/sh -c false\" did not complete successfully".into(),
            details: vec![bollard_buildkit_proto::google::protobuf::Any {
                type_url: "github.com/moby/buildkit/solver/errdefs.Solve".into(),
                value: vec![1, 2, 3],
            }],
        };
        let status = tonic::Status::with_details(
            tonic::Code::Unknown,
            inner.message.clone(),
            inner.encode_to_vec().into(),
        );
        assert_eq!(rpc_status(&status), inner);
        let plain = rpc_status(&tonic::Status::not_found("gone"));
        assert_eq!(plain.code, tonic::Code::NotFound as i32);
        assert_eq!(plain.message, "gone");
    }
}
