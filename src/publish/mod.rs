//! The publish stage: per-platform results → one OCI index per target →
//! tags.
//!
//! Entry point: [`publish`]. The executor pushes each platform's image by
//! digest (`push-by-digest=true`) to the repository of the target's first
//! tag and hands over each result's descriptor ([`PlatformResult`]). For
//! every target this stage then
//!
//! 1. resolves the results: an image manifest is taken as is; an index
//!    (BuildKit's export with attestations) is read and flattened to its
//!    image manifest for that platform plus the attestation manifests that
//!    describe it ([`index::flatten_platform_index`]);
//! 2. builds the OCI index deterministically ([`index::build_index`]):
//!    platforms in the target's order, then attestations; `index:`
//!    annotations on the index, `manifest-descriptor:` ones on the image
//!    descriptors;
//! 3. for every repository among the tags, makes every child exist there
//!    ([`copy::ensure_children`]: cross-repo mounts, manifest copies) and
//!    pushes the index **by digest**, which is untagged, so nothing is
//!    visible yet, and makes the registry validate the index now;
//! 4. only when steps 1–3 succeeded for every target of the run, writes all
//!    tags (PUT of the index by tag), in parallel with bounded concurrency.
//!
//! A failure before step 4 therefore leaves every existing tag untouched.
//! Step 4 is the only one that changes what a tag points to; a tag write
//! that still fails after its retries is reported with the tags that were
//! written ([`PublishError::Tags`]).
//!
//! Progress goes to the [`PublishEvent`] channel; this module never prints.
//! [`metadata_json`] renders the bake-style metadata file.
//!
//! `index_cmd` holds the library side of `mybake index create` and
//! `mybake index inspect`.

pub mod copy;
pub mod index;
pub mod index_cmd;
pub mod lock;
pub mod outputs;
pub mod place;
pub mod registry;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use mybake_buildkit::auth::AuthService;
use mybake_buildkit::CancellationToken;
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub use copy::{Child, ContentCache, CopyStats};
pub use index::{
    build_index, AnnotationMode, BuiltIndex, Descriptor, ImageIndex, IndexAnnotations, Platform,
    OCI_INDEX,
};
pub use index_cmd::{create, inspect, CreateReport, CreateRequest, InspectNode, Inspection};
pub use registry::{
    parse_reference, repository_name, Reference, RegistryClient, RegistryError, RegistryOptions,
    RetryPolicy,
};

use copy::ensure_children;
use index::{flatten_platform_index, is_index_media_type, ManifestDoc};
use registry::at_digest;

/// One platform's build result, as the executor got it from BuildKit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformResult {
    /// `os/arch[/variant]` as requested (`linux/arm/v7`).
    pub platform: String,
    /// `containerimage.descriptor`: an image manifest, or an index of the
    /// image manifest and its attestation manifest.
    pub descriptor: Descriptor,
}

/// One target to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPublish {
    /// The target's name.
    pub name: String,
    /// Full references to write (`localhost:5000/app:dev`).
    pub tags: Vec<String>,
    /// The target's `annotation` attribute (all keys; this stage uses the
    /// `index:` and `manifest-descriptor:` ones, see
    /// [`AnnotationMode::Build`]).
    pub annotations: BTreeMap<String, String>,
    /// The per-platform results, in the target's platform order.
    pub results: Vec<PlatformResult>,
    /// The repository the results were pushed to; `None`: the repository
    /// of the first tag (what the executor uses).
    pub source: Option<String>,
}

/// What to publish in one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishPlan {
    /// The targets.
    pub targets: Vec<TargetPublish>,
}

/// How to publish.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// Registries (`host[:port]`) reached over plain HTTP besides loopback
    /// ones.
    pub insecure_registries: Vec<String>,
    /// Retries of failed registry requests.
    pub retry: RetryPolicy,
    /// The limit for one attempt of a small request.
    pub request_timeout: Duration,
    /// The limit for opening a connection.
    pub connect_timeout: Duration,
    /// The limit for a pause in a response (blob copies).
    pub read_timeout: Duration,
    /// Registry requests (copies, tag writes) in flight at once.
    pub concurrency: usize,
    /// Credentials; `None`: the user's Docker configuration.
    pub auth: Option<AuthService>,
    /// Cancelling it (SIGINT/SIGTERM) stops the publish at once: no request
    /// is started after it, requests in flight are dropped, and the error
    /// is [`PublishError::Interrupted`] with the tags written before.
    pub cancel: CancellationToken,
}

impl Default for PublishOptions {
    fn default() -> Self {
        let r = RegistryOptions::default();
        PublishOptions {
            insecure_registries: Vec::new(),
            retry: r.retry,
            request_timeout: r.request_timeout,
            connect_timeout: r.connect_timeout,
            read_timeout: r.read_timeout,
            concurrency: 8,
            auth: None,
            cancel: CancellationToken::new(),
        }
    }
}

impl PublishOptions {
    /// The registry client options.
    pub fn registry_options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure: self.insecure_registries.clone(),
            retry: self.retry.clone(),
            request_timeout: self.request_timeout,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            auth: self.auth.clone(),
            cancel: self.cancel.clone(),
        }
    }

    /// A registry client for these options.
    pub fn client(
        &self,
        events: Option<mpsc::Sender<PublishEvent>>,
    ) -> Result<RegistryClient, PublishError> {
        RegistryClient::new(self.registry_options(), events).map_err(|source| {
            PublishError::Registry {
                target: None,
                source,
            }
        })
    }
}

/// Progress of a publish (or `index create`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishEvent {
    /// A target's index is built (nothing pushed yet).
    IndexBuilt {
        /// The target (`index create` for that command).
        target: String,
        /// The index digest.
        digest: String,
        /// Its size.
        size: i64,
        /// Children (images and attestations).
        manifests: usize,
    },
    /// Every child is in `repository` and the index was pushed there by
    /// digest (untagged).
    RepositoryReady {
        /// The target.
        target: String,
        /// `registry/repository`.
        repository: String,
        /// What was copied.
        stats: CopyStats,
    },
    /// A registry request failed and is retried after `delay`.
    Retrying {
        /// What the request was about.
        reference: String,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// Why it failed.
        reason: String,
    },
    /// Another run (on this machine) is writing tags of `repository`;
    /// this one waits for it before writing its own.
    WaitingForLock {
        /// `registry/repository`.
        repository: String,
    },
    /// A tag now points to the target's index.
    TagWritten {
        /// The target.
        target: String,
        /// The full reference.
        tag: String,
        /// The index digest.
        digest: String,
    },
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The plan or request is not valid (nothing was sent).
    #[error("{}{message}", prefix(target))]
    Invalid {
        /// The target, when the problem is one target's.
        target: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A registry operation failed before any tag was written.
    #[error("{}{source}", prefix(target))]
    Registry {
        /// The target, when the failure is one target's.
        target: Option<String>,
        /// The failure.
        #[source]
        source: RegistryError,
    },
    /// Some tag writes failed (after their retries); `written` did happen.
    #[error("{} of {} tag(s) could not be written: {}{}", failed.len(), failed.len() + written.len(), failed.first().map(|(_, e)| e.to_string()).unwrap_or_default(), if written.is_empty() { " (no tag was written)".to_owned() } else { format!(" (written: {})", written.join(", ")) })]
    Tags {
        /// Tags that were written.
        written: Vec<String>,
        /// Tags that were not, with why.
        failed: Vec<(String, RegistryError)>,
    },
    /// The tags could not be locked against concurrent runs (nothing was
    /// written).
    #[error("{0}")]
    Lock(#[from] lock::LockError),
    /// Every tag was written, but reading them back found some pointing
    /// elsewhere: another writer changed them (or they could not be read).
    #[error("{} of {} tag(s) written by this run {}: {}", changed.len(), written.len(), if changed.iter().all(|c| c.found.is_ok()) { "were changed by another writer right after" } else { "could not be confirmed" }, changed.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Changed {
        /// Every tag this run wrote.
        written: Vec<String>,
        /// The ones that no longer point to this run's index.
        changed: Vec<ChangedTag>,
    },
    /// Cancelled (SIGINT/SIGTERM). `written`: confirmed written before;
    /// `in_flight`: the write was under way and was dropped (the registry
    /// may or may not have applied it); `not_written`: never sent (or
    /// failed).
    #[error("interrupted {}", if written.is_empty() && in_flight.is_empty() { "before any tag was written".to_owned() } else { format!("while writing tags ({} of {} written)", written.len(), written.len() + in_flight.len() + not_written.len()) })]
    Interrupted {
        /// Tags written before the interruption.
        written: Vec<String>,
        /// Tags whose write was in flight.
        in_flight: Vec<String>,
        /// Tags not written.
        not_written: Vec<String>,
    },
}

/// A tag that did not read back as this run's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedTag {
    /// The tag.
    pub tag: String,
    /// This run's index.
    pub expected: String,
    /// What the tag points to now (`None`: nothing), or why it could not be
    /// read.
    pub found: Result<Option<String>, String>,
}

impl std::fmt::Display for ChangedTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.found {
            Ok(Some(d)) => write!(
                f,
                "{} now points to {d}, not to this run's index {}",
                self.tag, self.expected
            ),
            Ok(None) => write!(f, "{} no longer exists", self.tag),
            Err(e) => write!(f, "{} could not be read back: {e}", self.tag),
        }
    }
}

fn prefix(target: &Option<String>) -> String {
    match target {
        Some(t) => format!("target {t:?}: "),
        None => String::new(),
    }
}

impl PublishError {
    fn invalid(target: &str, message: impl Into<String>) -> Self {
        PublishError::Invalid {
            target: Some(target.to_owned()),
            message: message.into(),
        }
    }

    fn registry(target: &str, source: RegistryError) -> Self {
        PublishError::Registry {
            target: Some(target.to_owned()),
            source,
        }
    }

    /// The tags written before the failure, in the order given (none for
    /// a failure before the tag writes).
    pub fn written(&self) -> &[String] {
        match self {
            PublishError::Tags { written, .. }
            | PublishError::Changed { written, .. }
            | PublishError::Interrupted { written, .. } => written,
            PublishError::Invalid { .. }
            | PublishError::Registry { .. }
            | PublishError::Lock(_) => &[],
        }
    }

    /// The registry error behind this one, if any.
    pub fn registry_error(&self) -> Option<&RegistryError> {
        match self {
            PublishError::Registry { source, .. } => Some(source),
            PublishError::Tags { failed, .. } => failed.first().map(|(_, e)| e),
            PublishError::Invalid { .. }
            | PublishError::Lock(_)
            | PublishError::Changed { .. }
            | PublishError::Interrupted { .. } => None,
        }
    }
}

/// One target's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetReport {
    /// The target.
    pub name: String,
    /// The index digest.
    pub digest: String,
    /// The index size in bytes.
    pub size: i64,
    /// The index media type ([`OCI_INDEX`]).
    pub media_type: String,
    /// The tags written, in the target's order.
    pub tags: Vec<String>,
    /// The index's children (images in platform order, then attestations).
    pub manifests: Vec<Descriptor>,
    /// The exact index JSON pushed.
    pub index_json: String,
}

impl TargetReport {
    /// The descriptor of the index.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// The image manifests, one per platform (attestations left out).
    pub fn platforms(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests.iter().filter(|m| !m.is_attestation())
    }
}

/// The outcome of a publish, per target in plan order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// The targets.
    pub targets: Vec<TargetReport>,
}

/// Bake-style metadata (`--metadata-file`): per target
/// `containerimage.digest`, `containerimage.descriptor`, `image.name`
/// (comma-joined tags) and `mybake.platforms` (the per-platform image
/// manifest descriptors, with their platforms).
pub fn metadata_json(report: &PublishReport) -> Value {
    let mut out = serde_json::Map::new();
    for t in &report.targets {
        let platforms: Vec<Value> = t
            .platforms()
            .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
            .collect();
        out.insert(
            t.name.clone(),
            json!({
                "containerimage.descriptor": {
                    "mediaType": t.media_type,
                    "digest": t.digest,
                    "size": t.size,
                },
                "containerimage.digest": t.digest,
                "image.name": t.tags.join(","),
                "mybake.platforms": platforms,
            }),
        );
    }
    Value::Object(out)
}

/// A target ready for its tags: the index and where it goes.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub name: String,
    pub built: BuiltIndex,
    pub children: Vec<Child>,
    /// The tag references, in the order given.
    pub tags: Vec<(String, Reference)>,
}

/// Publishes every target of `plan`: all indexes built and all children
/// copied first, then all tags written. See the module documentation.
///
/// Events are sent with back-pressure: drain the receiver (or drop it, then
/// events are discarded) or the publish waits once the channel is full.
pub async fn publish(
    plan: PublishPlan,
    opts: PublishOptions,
    events: mpsc::Sender<PublishEvent>,
) -> Result<PublishReport, PublishError> {
    let client = opts.client(Some(events.clone()))?;
    publish_with(&client, plan, &opts, &events).await
}

/// [`publish`] with a given client (shared connections and credentials).
pub async fn publish_with(
    client: &RegistryClient,
    plan: PublishPlan,
    opts: &PublishOptions,
    events: &mpsc::Sender<PublishEvent>,
) -> Result<PublishReport, PublishError> {
    let cancel = client.options().cancel.clone();
    let all_tags: Vec<String> = plan
        .targets
        .iter()
        .flat_map(|t| t.tags.iter().cloned())
        .collect();
    let result = publish_stages(client, plan, opts, events).await;
    match result {
        Err(e @ PublishError::Interrupted { .. }) => Err(e),
        // Cancelled before the tag writes (or a failure caused by it).
        Err(e) if cancel.is_cancelled() && e.written().is_empty() => {
            Err(PublishError::Interrupted {
                written: Vec::new(),
                in_flight: Vec::new(),
                not_written: all_tags,
            })
        }
        other => other,
    }
}

async fn publish_stages(
    client: &RegistryClient,
    plan: PublishPlan,
    opts: &PublishOptions,
    events: &mpsc::Sender<PublishEvent>,
) -> Result<PublishReport, PublishError> {
    let concurrency = opts.concurrency.max(1);
    // Validate everything before the first request.
    let mut seen_tags = HashSet::new();
    let mut checked = Vec::new();
    for t in &plan.targets {
        if t.results.is_empty() {
            return Err(PublishError::invalid(
                &t.name,
                "no platform results to publish",
            ));
        }
        if t.tags.is_empty() {
            return Err(PublishError::invalid(&t.name, "no tags to publish to"));
        }
        let tags = parse_tags(&t.name, &t.tags)?;
        for (text, r) in &tags {
            if !seen_tags.insert(r.whole()) {
                return Err(PublishError::invalid(
                    &t.name,
                    format!("tag {text} is written by more than one target"),
                ));
            }
        }
        let source = match &t.source {
            Some(s) => parse_reference(s).map_err(|e| PublishError::registry(&t.name, e))?,
            None => tags[0].1.clone(),
        };
        let platforms = t
            .results
            .iter()
            .map(|r| Platform::parse(&r.platform).map_err(|m| PublishError::invalid(&t.name, m)))
            .collect::<Result<Vec<_>, _>>()?;
        let annotations = IndexAnnotations::split(&t.annotations, AnnotationMode::Build)
            .map_err(|m| PublishError::invalid(&t.name, m))?;
        checked.push((t, tags, source, platforms, annotations));
    }

    // Phase 1: indexes.
    let cache = ContentCache::new();
    let cache = &cache;
    let prepared: Vec<Prepared> = futures::stream::iter(checked.into_iter().map(
        |(t, tags, source, platforms, annotations)| async move {
            let mut entries = Vec::new();
            for (r, platform) in t.results.iter().zip(&platforms) {
                let resolved = resolve_result(client, cache, &source, r, platform)
                    .await
                    .map_err(|e| match e {
                        ResolveError::Registry(e) => PublishError::registry(&t.name, e),
                        ResolveError::Invalid(m) => PublishError::invalid(&t.name, m),
                    })?;
                for e in resolved {
                    if !entries.iter().any(|x: &Descriptor| x == &e) {
                        entries.push(e);
                    }
                }
            }
            annotations.apply_to(&mut entries);
            let built = build_index(entries, annotations.index.clone());
            let children = built
                .index
                .manifests
                .iter()
                .map(|entry| Child {
                    entry: entry.clone(),
                    source: source.clone(),
                })
                .collect();
            let _ = events
                .send(PublishEvent::IndexBuilt {
                    target: t.name.clone(),
                    digest: built.digest.clone(),
                    size: built.size(),
                    manifests: built.index.manifests.len(),
                })
                .await;
            Ok::<_, PublishError>(Prepared {
                name: t.name.clone(),
                built,
                children,
                tags,
            })
        },
    ))
    .buffered(concurrency)
    .try_collect()
    .await?;

    // Phase 2: children and untagged indexes in every tag repository.
    prepare_repositories(client, cache, &prepared, concurrency, events).await?;

    // Phase 3: tags.
    let written = write_tags(client, &prepared, concurrency, events).await?;
    Ok(PublishReport {
        targets: prepared
            .into_iter()
            .map(|p| {
                let tags = p
                    .tags
                    .iter()
                    .filter(|(text, _)| written.contains(text))
                    .map(|(text, _)| text.clone())
                    .collect();
                TargetReport {
                    name: p.name,
                    digest: p.built.digest.clone(),
                    size: p.built.size(),
                    media_type: OCI_INDEX.to_owned(),
                    tags,
                    manifests: p.built.index.manifests.clone(),
                    index_json: p.built.json().to_owned(),
                }
            })
            .collect(),
    })
}

pub(crate) fn parse_tags(
    target: &str,
    tags: &[String],
) -> Result<Vec<(String, Reference)>, PublishError> {
    tags.iter()
        .map(|text| {
            let r =
                parse_reference(text).map_err(|e| PublishError::invalid(target, e.to_string()))?;
            if r.digest().is_some() {
                return Err(PublishError::invalid(
                    target,
                    format!("tag {text} must not name a digest"),
                ));
            }
            Ok((text.clone(), r))
        })
        .collect()
}

enum ResolveError {
    Registry(RegistryError),
    Invalid(String),
}

/// One platform result as index children: the image manifest (with the
/// platform) and, for a per-platform index, its attestations.
async fn resolve_result(
    client: &RegistryClient,
    cache: &ContentCache,
    source: &Reference,
    result: &PlatformResult,
    platform: &Platform,
) -> Result<Vec<Descriptor>, ResolveError> {
    let d = &result.descriptor;
    if !is_index_media_type(&d.media_type) {
        return Ok(vec![d.with_platform(Some(platform.clone()))]);
    }
    let reference = at_digest(source, &d.digest);
    let m = cache
        .manifest(client, source, &d.digest)
        .await
        .map_err(ResolveError::Registry)?;
    if d.size >= 0 && m.size() != d.size {
        return Err(ResolveError::Registry(RegistryError::ManifestInvalid {
            reference: reference.whole(),
            message: format!(
                "the descriptor says {} bytes, the index has {} bytes",
                d.size,
                m.size()
            ),
        }));
    }
    let doc = ManifestDoc::parse(&m.bytes).map_err(|message| {
        ResolveError::Registry(RegistryError::ManifestInvalid {
            reference: reference.whole(),
            message,
        })
    })?;
    flatten_platform_index(&doc, platform)
        .map_err(|m| ResolveError::Invalid(format!("{}: {m}", reference.whole())))
}

/// For each prepared target and each distinct repository among its tags:
/// every child there, then the index by digest. Fails fast.
pub(crate) async fn prepare_repositories(
    client: &RegistryClient,
    cache: &ContentCache,
    prepared: &[Prepared],
    concurrency: usize,
    events: &mpsc::Sender<PublishEvent>,
) -> Result<(), PublishError> {
    let mut jobs = Vec::new();
    for p in prepared {
        let mut repos = HashSet::new();
        for (_, r) in &p.tags {
            if repos.insert(repository_name(r)) {
                jobs.push((p, r.clone()));
            }
        }
    }
    futures::stream::iter(jobs.into_iter().map(|(p, repo)| async move {
        let stats = ensure_children(client, cache, &p.children, &repo, concurrency)
            .await
            .map_err(|e| PublishError::registry(&p.name, e))?;
        client
            .put_manifest(
                &at_digest(&repo, &p.built.digest),
                p.built.bytes.clone(),
                OCI_INDEX,
            )
            .await
            .map_err(|e| PublishError::registry(&p.name, e))?;
        let _ = events
            .send(PublishEvent::RepositoryReady {
                target: p.name.clone(),
                repository: repository_name(&repo),
                stats,
            })
            .await;
        Ok::<_, PublishError>(())
    }))
    .buffer_unordered(concurrency)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// How one tag write ended.
enum TagWrite {
    Written,
    Failed(RegistryError),
    /// Cancelled while the request was under way.
    InFlight,
    /// Cancelled before it started.
    NotStarted,
}

/// Writes every tag of every prepared target, `concurrency` at a time,
/// holding the lock of every repository written to ([`lock`]) so that
/// concurrent runs on this machine do not interleave their tags, then reads
/// every tag back (manifest `HEAD`) to catch another writer. Returns the
/// tags written (as given), or [`PublishError::Tags`],
/// [`PublishError::Changed`], [`PublishError::Interrupted`] (the client's
/// cancellation token) or [`PublishError::Lock`].
pub(crate) async fn write_tags(
    client: &RegistryClient,
    prepared: &[Prepared],
    concurrency: usize,
    events: &mpsc::Sender<PublishEvent>,
) -> Result<HashSet<String>, PublishError> {
    let cancel = client.options().cancel.clone();
    let cancel = &cancel;
    // The tags in the order given, for reports.
    let order: Vec<&String> = prepared
        .iter()
        .flat_map(|p| p.tags.iter().map(|(t, _)| t))
        .collect();
    let pos = |t: &String| order.iter().position(|o| *o == t).unwrap_or(usize::MAX);
    let interrupted = |written: Vec<String>, in_flight: Vec<String>| {
        let not_written = order
            .iter()
            .filter(|t| !written.contains(t) && !in_flight.contains(t))
            .map(|t| (*t).clone())
            .collect();
        PublishError::Interrupted {
            written,
            in_flight,
            not_written,
        }
    };

    let repositories: Vec<String> = prepared
        .iter()
        .flat_map(|p| p.tags.iter().map(|(_, r)| lock_key(r)))
        .collect();
    let locks = lock::lock_repositories(&lock::lock_dir(), &repositories, cancel, |repo| {
        // Best effort and immediate: the channel may be full or closed.
        let _ = events.try_send(PublishEvent::WaitingForLock {
            repository: repo.to_owned(),
        });
    })
    .await;
    let _locks = match locks {
        Ok(l) => l,
        Err(lock::LockError::Interrupted { .. }) => {
            return Err(interrupted(Vec::new(), Vec::new()))
        }
        Err(e) => return Err(e.into()),
    };

    let jobs = prepared
        .iter()
        .flat_map(|p| p.tags.iter().map(move |(text, r)| (p, text, r)));
    let results: Vec<(String, TagWrite)> =
        futures::stream::iter(jobs.map(|(p, text, r)| async move {
            if cancel.is_cancelled() {
                return (text.clone(), TagWrite::NotStarted);
            }
            let outcome = match client
                .put_manifest(r, p.built.bytes.clone(), OCI_INDEX)
                .await
            {
                Ok(()) => TagWrite::Written,
                Err(RegistryError::Interrupted { .. }) => TagWrite::InFlight,
                Err(e) => TagWrite::Failed(e),
            };
            if matches!(outcome, TagWrite::Written) {
                let _ = events
                    .send(PublishEvent::TagWritten {
                        target: p.name.clone(),
                        tag: text.clone(),
                        digest: p.built.digest.clone(),
                    })
                    .await;
            }
            (text.clone(), outcome)
        }))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut written = Vec::new();
    let mut failed = Vec::new();
    let mut in_flight = Vec::new();
    for (tag, r) in results {
        match r {
            TagWrite::Written => written.push(tag),
            TagWrite::Failed(e) => failed.push((tag, e)),
            TagWrite::InFlight => in_flight.push(tag),
            TagWrite::NotStarted => {}
        }
    }
    // Report in the order given, not completion order.
    written.sort_by_key(|t| pos(t));
    failed.sort_by_key(|(t, _)| pos(t));
    in_flight.sort_by_key(|t| pos(t));
    if cancel.is_cancelled() {
        return Err(interrupted(written, in_flight));
    }
    if !failed.is_empty() {
        return Err(PublishError::Tags { written, failed });
    }

    // Read back, still holding the locks: a tag that does not point to this
    // run's index was changed by a writer outside this machine's locks.
    let checks = prepared.iter().flat_map(|p| {
        p.tags
            .iter()
            .map(move |(text, r)| (text, r, p.built.digest.as_str()))
    });
    let read: Vec<Option<ChangedTag>> =
        futures::stream::iter(checks.map(|(text, r, digest)| async move {
            let found = match client.head_manifest(r).await {
                Ok(h) => Ok(h.map(|h| h.digest)),
                Err(e) => Err(e.to_string()),
            };
            (found.as_ref() != Ok(&Some(digest.to_owned()))).then(|| ChangedTag {
                tag: text.clone(),
                expected: digest.to_owned(),
                found,
            })
        }))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    if cancel.is_cancelled() {
        return Err(interrupted(written, Vec::new()));
    }
    let changed: Vec<ChangedTag> = read.into_iter().flatten().collect();
    if !changed.is_empty() {
        return Err(PublishError::Changed { written, changed });
    }
    Ok(written.into_iter().collect())
}

/// The lock key of a tag's repository: `registry/repository`, the registry
/// as requests go to it (`docker.io` → `index.docker.io`).
fn lock_key(r: &Reference) -> String {
    format!("{}/{}", r.resolve_registry(), r.repository())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(n: u8, media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            size: 500 + n as i64,
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    #[test]
    fn metadata_shape() {
        let att = Descriptor {
            media_type: index::OCI_MANIFEST.into(),
            digest: "sha256:att".into(),
            size: 1,
            annotations: BTreeMap::from([(
                index::REFERENCE_TYPE.to_owned(),
                index::ATTESTATION_MANIFEST.to_owned(),
            )]),
            platform: Some(Platform::unknown()),
            artifact_type: None,
        };
        let img = descriptor(1, index::OCI_MANIFEST)
            .with_platform(Some(Platform::parse("linux/arm/v7").unwrap()));
        let report = PublishReport {
            targets: vec![TargetReport {
                name: "api".into(),
                digest: "sha256:idx".into(),
                size: 42,
                media_type: OCI_INDEX.into(),
                tags: vec!["r/api:1".into(), "r/api:latest".into()],
                manifests: vec![img, att],
                index_json: "{}".into(),
            }],
        };
        let v = metadata_json(&report);
        assert_eq!(v["api"]["containerimage.digest"], "sha256:idx");
        assert_eq!(v["api"]["image.name"], "r/api:1,r/api:latest");
        assert_eq!(
            v["api"]["containerimage.descriptor"]["mediaType"],
            OCI_INDEX
        );
        assert_eq!(v["api"]["containerimage.descriptor"]["size"], 42);
        let platforms = v["api"]["mybake.platforms"].as_array().unwrap();
        assert_eq!(platforms.len(), 1);
        assert_eq!(platforms[0]["platform"]["variant"], "v7");
        assert_eq!(platforms[0]["digest"], descriptor(1, "").digest);
    }

    #[tokio::test]
    async fn invalid_plans_send_nothing() {
        // An unroutable registry: any request would fail as unreachable,
        // so an Invalid error proves validation ran first.
        let opts = PublishOptions {
            auth: Some(AuthService::anonymous()),
            ..PublishOptions::default()
        };
        let (tx, _rx) = mpsc::channel(16);
        let result = |tags: Vec<&str>, platform: &str| PublishPlan {
            targets: vec![TargetPublish {
                name: "t".into(),
                tags: tags.into_iter().map(String::from).collect(),
                results: vec![PlatformResult {
                    platform: platform.into(),
                    descriptor: descriptor(1, index::OCI_MANIFEST),
                }],
                ..TargetPublish::default()
            }],
        };
        for plan in [
            result(vec![], "linux/amd64"),
            result(vec!["127.0.0.1:1/x:y"], "linux"),
            result(vec!["127.0.0.1:1/x@sha256:0000000000000000000000000000000000000000000000000000000000000000"], "linux/amd64"),
            result(vec!["127.0.0.1:1/Bad Name:y"], "linux/amd64"),
            PublishPlan {
                targets: vec![TargetPublish {
                    name: "t".into(),
                    tags: vec!["127.0.0.1:1/x:y".into()],
                    ..TargetPublish::default()
                }],
            },
        ] {
            let err = publish(plan, opts.clone(), tx.clone()).await.unwrap_err();
            assert!(matches!(err, PublishError::Invalid { .. }), "{err}");
            assert!(err.to_string().starts_with("target \"t\": "), "{err}");
        }
        // Two targets writing one tag.
        let mut plan = result(vec!["127.0.0.1:1/x:y"], "linux/amd64");
        let mut other = plan.targets[0].clone();
        other.name = "u".into();
        plan.targets.push(other);
        let err = publish(plan, opts, tx).await.unwrap_err();
        assert!(err.to_string().contains("more than one target"), "{err}");
    }
}
