//! The library side of `mybake index create` and `mybake index inspect`.
//!
//! `create` follows `docker buildx imagetools create`: each source (a tag
//! or digest reference) is resolved to its manifest or index; indexes are
//! flattened into their children (attestation manifests kept); a single
//! manifest gets its platform from its image config; children are deduped
//! by digest (first wins) and optionally filtered by platform (an
//! attestation stays when the image it describes stays); annotations
//! (un-prefixed or `index:` on the index, `manifest-descriptor:` on the
//! image descriptors) are applied; the OCI index is pushed to every tag
//! after its children were copied to each tag's repository — same
//! all-or-nothing order as [`super::publish`]. `dry_run` only builds the
//! index and returns its JSON.
//!
//! `inspect` reads a reference and returns the tree of an index or
//! manifest (media types, platforms, sizes, digests, config and layers),
//! rendered by [`Inspection::text`] or [`Inspection::json`].

use std::collections::BTreeMap;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use super::copy::{Child, ContentCache};
use super::index::{
    build_index, is_index_media_type, AnnotationMode, BlobRef, Descriptor, IndexAnnotations,
    ManifestDoc, Platform, OCI_INDEX,
};
use super::registry::{at_digest, parse_reference, Reference, RegistryClient, RegistryError};
use super::{
    parse_tags, prepare_repositories, write_tags, Prepared, PublishError, PublishEvent,
    PublishOptions,
};

/// The largest image config read to learn a manifest's platform.
const MAX_CONFIG_SIZE: i64 = 8 << 20;
/// The name used for `index create` in events and errors.
const CREATE: &str = "index create";

/// `mybake index create -t TAG... SOURCE... [--platform P]...
/// [--annotation K=V]... [--dry-run]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateRequest {
    /// Full references to write; may be empty only for a dry run.
    pub tags: Vec<String>,
    /// Source references (tags or digests), in order.
    pub sources: Vec<String>,
    /// Keep only these platforms (`os/arch[/variant]`); empty: all.
    pub platforms: Vec<String>,
    /// Annotations (`[type[platforms]:]key` → value); un-prefixed keys go
    /// on the index.
    pub annotations: BTreeMap<String, String>,
    /// Build the index and return it without pushing anything.
    pub dry_run: bool,
}

/// What `index create` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateReport {
    /// The index digest.
    pub digest: String,
    /// Its size.
    pub size: i64,
    /// Its media type ([`OCI_INDEX`]).
    pub media_type: String,
    /// The exact JSON (what `--dry-run` prints).
    pub index_json: String,
    /// The children.
    pub manifests: Vec<Descriptor>,
    /// The tags written (none for a dry run).
    pub tags: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Splits a `KEY=VALUE` command-line argument.
pub fn parse_key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("invalid annotation {arg:?}: expected KEY=VALUE")),
    }
}

fn invalid(message: impl Into<String>) -> PublishError {
    PublishError::Invalid {
        target: None,
        message: message.into(),
    }
}

fn registry(source: RegistryError) -> PublishError {
    PublishError::Registry {
        target: None,
        source,
    }
}

/// Merges sources into one index and pushes it to every tag (or, with
/// `dry_run`, only builds it). See the module documentation.
pub async fn create(
    request: CreateRequest,
    opts: &PublishOptions,
    events: Option<mpsc::Sender<PublishEvent>>,
) -> Result<CreateReport, PublishError> {
    if request.sources.is_empty() {
        return Err(invalid("no source image given"));
    }
    if request.tags.is_empty() && !request.dry_run {
        return Err(invalid(
            "no tag given (-t); use --dry-run to only print the index",
        ));
    }
    let tags = parse_tags(CREATE, &request.tags)?;
    let sources = request
        .sources
        .iter()
        .map(|s| parse_reference(s).map_err(registry))
        .collect::<Result<Vec<_>, _>>()?;
    let filter = request
        .platforms
        .iter()
        .map(|p| Platform::parse(p).map_err(invalid))
        .collect::<Result<Vec<_>, _>>()?;
    let annotations =
        IndexAnnotations::split(&request.annotations, AnnotationMode::Create).map_err(invalid)?;

    let client = opts.client(events.clone())?;
    let concurrency = opts.concurrency.max(1);
    let cache = ContentCache::new();

    // Resolve sources (in order) into children.
    let resolved: Vec<Vec<Child>> =
        futures::stream::iter(sources.iter().map(|s| resolve_source(&client, &cache, s)))
            .buffered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(registry)?;
    let mut children: Vec<Child> = Vec::new();
    for c in resolved.into_iter().flatten() {
        if !children.iter().any(|x| x.entry.digest == c.entry.digest) {
            children.push(c);
        }
    }
    if !filter.is_empty() {
        let keep_image = |e: &Descriptor| {
            e.platform
                .as_ref()
                .is_some_and(|p| filter.iter().any(|f| f.matches(p)))
        };
        let kept: Vec<String> = children
            .iter()
            .filter(|c| !c.entry.is_attestation() && keep_image(&c.entry))
            .map(|c| c.entry.digest.clone())
            .collect();
        children.retain(|c| match c.entry.attestation_subject() {
            Some(subject) => kept.iter().any(|k| k == subject),
            None => kept.contains(&c.entry.digest),
        });
    }
    if children.is_empty() {
        return Err(invalid(if filter.is_empty() {
            "the sources have no manifests".to_owned()
        } else {
            format!(
                "no manifest of the sources matches the platform(s) {}",
                request.platforms.join(", ")
            )
        }));
    }
    let mut entries: Vec<Descriptor> = children.iter().map(|c| c.entry.clone()).collect();
    annotations.apply_to(&mut entries);
    let built = build_index(entries, annotations.index.clone());
    // Children in index order, each with its source.
    let children: Vec<Child> = built
        .index
        .manifests
        .iter()
        .map(|e| Child {
            entry: e.clone(),
            source: children
                .iter()
                .find(|c| c.entry.digest == e.digest)
                .map(|c| c.source.clone())
                .expect("every entry comes from a child"),
        })
        .collect();
    // Without a listener, events go to a closed channel (sends fail at once).
    let events = events.unwrap_or_else(|| mpsc::channel(1).0);
    let _ = events
        .send(PublishEvent::IndexBuilt {
            target: CREATE.to_owned(),
            digest: built.digest.clone(),
            size: built.size(),
            manifests: built.index.manifests.len(),
        })
        .await;
    let mut report = CreateReport {
        digest: built.digest.clone(),
        size: built.size(),
        media_type: OCI_INDEX.to_owned(),
        index_json: built.json().to_owned(),
        manifests: built.index.manifests.clone(),
        tags: Vec::new(),
        dry_run: request.dry_run,
    };
    if request.dry_run {
        return Ok(report);
    }
    let prepared = [Prepared {
        name: CREATE.to_owned(),
        built,
        children,
        tags,
    }];
    prepare_repositories(&client, &cache, &prepared, concurrency, &events).await?;
    let written = write_tags(&client, &prepared, concurrency, &events).await?;
    report.tags = prepared[0]
        .tags
        .iter()
        .filter(|(t, _)| written.contains(t))
        .map(|(t, _)| t.clone())
        .collect();
    Ok(report)
}

/// A source as index children: an index's children, or the manifest
/// itself with the platform from its config.
async fn resolve_source(
    client: &RegistryClient,
    cache: &ContentCache,
    source: &Reference,
) -> Result<Vec<Child>, RegistryError> {
    let m = client.get_manifest(source).await?;
    let doc = ManifestDoc::parse(&m.bytes).map_err(|message| RegistryError::ManifestInvalid {
        reference: source.whole(),
        message,
    })?;
    let repo = at_digest(source, &m.digest);
    if is_index_media_type(&m.media_type) {
        return Ok(doc
            .manifests
            .into_iter()
            .map(|entry| Child {
                entry,
                source: repo.clone(),
            })
            .collect());
    }
    cache.insert(m.clone()).await;
    let platform = match &doc.config {
        Some(config) => config_platform(client, &repo, config).await?,
        None => None,
    };
    Ok(vec![Child {
        entry: Descriptor {
            media_type: m.media_type.clone(),
            digest: m.digest.clone(),
            size: m.size(),
            annotations: BTreeMap::new(),
            platform,
            artifact_type: None,
        },
        source: repo,
    }])
}

/// The platform recorded in an image config (`architecture`, `os`,
/// `variant`, `os.version`, `os.features`); `None` when the config is not
/// an image config.
async fn config_platform(
    client: &RegistryClient,
    repo: &Reference,
    config: &BlobRef,
) -> Result<Option<Platform>, RegistryError> {
    #[derive(serde::Deserialize)]
    struct ImageConfig {
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        os: String,
        #[serde(default)]
        variant: Option<String>,
        #[serde(rename = "os.version", default)]
        os_version: Option<String>,
        #[serde(rename = "os.features", default)]
        os_features: Vec<String>,
    }
    if !config.media_type.contains("config") && !config.media_type.contains("container.image") {
        return Ok(None);
    }
    let bytes = client
        .get_blob(repo, &config.digest, config.size, MAX_CONFIG_SIZE)
        .await?;
    let Ok(c) = serde_json::from_slice::<ImageConfig>(&bytes) else {
        return Ok(None);
    };
    if c.architecture.is_empty() || c.os.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        Platform {
            architecture: c.architecture,
            os: c.os,
            os_version: c.os_version.filter(|v| !v.is_empty()),
            os_features: c.os_features,
            variant: c.variant.filter(|v| !v.is_empty()),
        }
        .normalized(),
    ))
}

/// One node of an inspected tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectNode {
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Platform (from the parent index, or the image config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (of the descriptor in the parent index, or of the
    /// document for the root).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Image config (image manifests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<BlobRef>,
    /// Layers (image manifests).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<BlobRef>,
    /// Children (indexes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<InspectNode>,
    /// Why this child could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result of `index inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// The reference as given.
    pub name: String,
    /// The tree.
    #[serde(flatten)]
    pub root: InspectNode,
}

/// Reads `reference` (tag or digest) and its children (one level of
/// manifests below an index, nested indexes followed up to 3 levels).
pub async fn inspect(reference: &str, opts: &PublishOptions) -> Result<Inspection, PublishError> {
    let r = parse_reference(reference).map_err(registry)?;
    let client = opts.client(None)?;
    let m = client.get_manifest(&r).await.map_err(registry)?;
    let doc = ManifestDoc::parse(&m.bytes).map_err(|message| {
        registry(RegistryError::ManifestInvalid {
            reference: r.whole(),
            message,
        })
    })?;
    let repo = at_digest(&r, &m.digest);
    let mut root = node_of(
        &m.media_type,
        &m.digest,
        m.size(),
        None,
        doc.annotations.clone(),
        &doc,
    );
    if is_index_media_type(&m.media_type) {
        root.manifests = children_of(&client, &repo, &doc, opts.concurrency, 0).await;
    } else if let Some(config) = &doc.config {
        root.platform = config_platform(&client, &repo, config).await.ok().flatten();
    }
    Ok(Inspection {
        name: reference.to_owned(),
        root,
    })
}

fn node_of(
    media_type: &str,
    digest: &str,
    size: i64,
    platform: Option<Platform>,
    annotations: BTreeMap<String, String>,
    doc: &ManifestDoc,
) -> InspectNode {
    InspectNode {
        media_type: media_type.to_owned(),
        digest: digest.to_owned(),
        size,
        platform,
        annotations,
        config: doc.config.clone(),
        layers: doc.layers.clone(),
        manifests: Vec::new(),
        error: None,
    }
}

fn children_of<'a>(
    client: &'a RegistryClient,
    repo: &'a Reference,
    doc: &'a ManifestDoc,
    concurrency: usize,
    depth: usize,
) -> futures::future::BoxFuture<'a, Vec<InspectNode>> {
    Box::pin(async move {
        // Collected first: a lazy `map` closure here trips the
        // higher-ranked `Send` check of the boxed future.
        let jobs: Vec<_> = doc
            .manifests
            .iter()
            .map(|e| inspect_child(client, repo, e, concurrency, depth))
            .collect();
        futures::stream::iter(jobs)
            .buffered(concurrency.max(1))
            .collect()
            .await
    })
}

async fn inspect_child(
    client: &RegistryClient,
    repo: &Reference,
    e: &Descriptor,
    concurrency: usize,
    depth: usize,
) -> InspectNode {
    let mut node = InspectNode {
        media_type: e.media_type.clone(),
        digest: e.digest.clone(),
        size: e.size,
        platform: e.platform.clone(),
        annotations: e.annotations.clone(),
        config: None,
        layers: Vec::new(),
        manifests: Vec::new(),
        error: None,
    };
    match client.get_manifest(&at_digest(repo, &e.digest)).await {
        Err(err) => node.error = Some(err.to_string()),
        Ok(m) => match ManifestDoc::parse(&m.bytes) {
            Err(err) => node.error = Some(err),
            Ok(child) => {
                node.config = child.config.clone();
                node.layers = child.layers.clone();
                if is_index_media_type(&m.media_type) && depth < 3 {
                    node.manifests =
                        children_of(client, repo, &child, concurrency, depth + 1).await;
                }
            }
        },
    }
    node
}

impl Inspection {
    /// Pretty JSON (stable key order); see [`crate::report::index`].
    pub fn json(&self) -> String {
        crate::report::index::inspect_json(self)
    }

    /// A human-readable tree; see [`crate::report::index`].
    pub fn text(&self) -> String {
        crate::report::index::inspect_text(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert_eq!(
            parse_key_value("index:a=").unwrap(),
            ("index:a".into(), "".into())
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=v").is_err());
    }
}
