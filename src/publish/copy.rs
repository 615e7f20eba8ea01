//! Making an index's children exist in the repository the index goes to.
//!
//! distribution 2.8 accepts an index only when every child manifest is in
//! the same repository, and a manifest only when its blobs are. So before an
//! index is pushed to a repository other than where its children were
//! pushed, for each child manifest (recursively for nested indexes):
//!
//! 1. `HEAD` it in the destination: present (and of the expected size) →
//!    done.
//! 2. Read it from its source repository (cached per run, by digest).
//! 3. Make each blob (config, layers) exist: same registry → cross-repo
//!    mount (`POST ...?mount=<digest>&from=<repo>`; 201 mounted, 202 →
//!    cancel and copy); other registry → `HEAD`, then stream a copy.
//! 4. `PUT` the manifest by digest with its raw bytes and media type.
//!
//! When the destination is the source repository nothing is copied, but a
//! missing child is still an error ([`RegistryError::NotFound`] naming
//! `repo@digest`), so a bad descriptor fails before any tag is written.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::{Mutex, OnceCell};

use super::index::{is_index_media_type, BlobRef, Descriptor, ManifestDoc};
use super::registry::{at_digest, FetchedManifest, Reference, RegistryClient, RegistryError};

/// Nested indexes deeper than this are refused (a loop guard).
const MAX_DEPTH: usize = 4;

/// A child manifest of an index and the repository to read it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// Its descriptor in the index.
    pub entry: Descriptor,
    /// The repository (tag/digest ignored) that has it.
    pub source: Reference,
}

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Manifests already in the destination.
    pub manifests_present: usize,
    /// Manifests written to the destination.
    pub manifests_copied: usize,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: usize,
    /// Blobs copied through this client.
    pub blobs_copied: usize,
    /// Blobs already in the destination.
    pub blobs_present: usize,
}

impl std::ops::AddAssign for CopyStats {
    fn add_assign(&mut self, o: CopyStats) {
        self.manifests_present += o.manifests_present;
        self.manifests_copied += o.manifests_copied;
        self.blobs_mounted += o.blobs_mounted;
        self.blobs_copied += o.blobs_copied;
        self.blobs_present += o.blobs_present;
    }
}

/// Manifests read during a run, by digest (content-addressed, so the
/// repository they came from does not matter), and the blobs made to exist
/// in each destination repository.
#[derive(Debug, Default)]
pub struct ContentCache {
    manifests: Mutex<HashMap<String, FetchedManifest>>,
    /// Per (destination registry and repository, blob digest): done once
    /// the blob is there. Child manifests often share blobs (a base layer
    /// in every platform's image); each blob is mounted or copied into a
    /// repository once and the other manifests wait for it. Besides the
    /// saved requests this matters for correctness: distribution's
    /// filesystem driver rewrites a blob's link file in place (truncate,
    /// then write), so a second mount of a blob can make a concurrent
    /// manifest `PUT` that checks it fail with "blob unknown".
    blobs: Mutex<HashMap<BlobKey, Arc<OnceCell<()>>>>,
}

/// (destination registry and repository, blob digest).
type BlobKey = (String, String);

impl ContentCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers a manifest read elsewhere.
    pub async fn insert(&self, manifest: FetchedManifest) {
        self.manifests
            .lock()
            .await
            .insert(manifest.digest.clone(), manifest);
    }

    /// The manifest `digest` of `repository`, from the cache or the registry.
    pub async fn manifest(
        &self,
        client: &RegistryClient,
        repository: &Reference,
        digest: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        if let Some(m) = self.manifests.lock().await.get(digest) {
            return Ok(m.clone());
        }
        let m = client.get_manifest(&at_digest(repository, digest)).await?;
        self.manifests
            .lock()
            .await
            .insert(digest.to_owned(), m.clone());
        Ok(m)
    }
}

impl ContentCache {
    /// The once-cell of blob `digest` in repository `to`.
    async fn blob(&self, to: &Reference, digest: &str) -> Arc<OnceCell<()>> {
        let key = (
            format!("{}/{}", to.resolve_registry(), to.repository()),
            digest.to_owned(),
        );
        self.blobs.lock().await.entry(key).or_default().clone()
    }
}

fn same_repository(a: &Reference, b: &Reference) -> bool {
    a.resolve_registry() == b.resolve_registry() && a.repository() == b.repository()
}

/// Makes every child (and, recursively, what it needs) exist in the
/// repository `to`, `concurrency` children at a time.
pub async fn ensure_children(
    client: &RegistryClient,
    cache: &ContentCache,
    children: &[Child],
    to: &Reference,
    concurrency: usize,
) -> Result<CopyStats, RegistryError> {
    let stats: Vec<CopyStats> = futures::stream::iter(children.iter().map(|child| {
        ensure_manifest(
            client,
            cache,
            &child.source,
            to,
            &child.entry,
            concurrency,
            0,
        )
    }))
    .buffer_unordered(concurrency.max(1))
    .try_collect()
    .await?;
    let mut total = CopyStats::default();
    for s in stats {
        total += s;
    }
    Ok(total)
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn ensure_manifest<'a>(
    client: &'a RegistryClient,
    cache: &'a ContentCache,
    from: &'a Reference,
    to: &'a Reference,
    entry: &'a Descriptor,
    concurrency: usize,
    depth: usize,
) -> BoxFuture<'a, Result<CopyStats, RegistryError>> {
    Box::pin(async move {
        let mut stats = CopyStats::default();
        let dest = at_digest(to, &entry.digest);
        if let Some(head) = client.head_manifest(&dest).await? {
            if entry.size >= 0 && head.size >= 0 && head.size != entry.size {
                return Err(RegistryError::ManifestInvalid {
                    reference: dest.whole(),
                    message: format!(
                        "the descriptor says {} bytes, the registry has {} bytes",
                        entry.size, head.size
                    ),
                });
            }
            stats.manifests_present += 1;
            return Ok(stats);
        }
        if same_repository(from, to) {
            return Err(RegistryError::NotFound {
                reference: dest.whole(),
                message: "manifest unknown to the repository it should have been pushed to"
                    .to_owned(),
            });
        }
        let source = at_digest(from, &entry.digest);
        let manifest = cache.manifest(client, from, &entry.digest).await?;
        if entry.size >= 0 && manifest.size() != entry.size {
            return Err(RegistryError::ManifestInvalid {
                reference: source.whole(),
                message: format!(
                    "the descriptor says {} bytes, the manifest has {} bytes",
                    entry.size,
                    manifest.size()
                ),
            });
        }
        let doc = ManifestDoc::parse(&manifest.bytes).map_err(|message| {
            RegistryError::ManifestInvalid {
                reference: source.whole(),
                message,
            }
        })?;
        let media_type = doc
            .media_type
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| entry.media_type.clone());
        if is_index_media_type(&media_type) || !doc.manifests.is_empty() {
            if depth >= MAX_DEPTH {
                return Err(RegistryError::ManifestInvalid {
                    reference: source.whole(),
                    message: format!("indexes nested deeper than {MAX_DEPTH} levels"),
                });
            }
            for child in &doc.manifests {
                stats +=
                    ensure_manifest(client, cache, from, to, child, concurrency, depth + 1).await?;
            }
        } else {
            let blobs = doc.blobs();
            // Collected first: a lazy `map` closure here trips the
            // higher-ranked `Send` check of the boxed future.
            let jobs: Vec<_> = blobs
                .iter()
                .map(|b| ensure_blob(client, cache, from, to, b))
                .collect();
            let results: Vec<CopyStats> = futures::stream::iter(jobs)
                .buffer_unordered(concurrency.max(1))
                .try_collect()
                .await?;
            for s in results {
                stats += s;
            }
        }
        client
            .put_manifest(&dest, manifest.bytes.clone(), &media_type)
            .await?;
        stats.manifests_copied += 1;
        Ok(stats)
    })
}

/// Makes `blob` exist in `to`, once per run and repository (see
/// [`ContentCache`]): the first caller mounts or copies it, others wait for
/// that and count nothing; after a failure the next caller tries again.
async fn ensure_blob(
    client: &RegistryClient,
    cache: &ContentCache,
    from: &Reference,
    to: &Reference,
    blob: &BlobRef,
) -> Result<CopyStats, RegistryError> {
    let cell = cache.blob(to, &blob.digest).await;
    let mut stats = CopyStats::default();
    cell.get_or_try_init(|| async {
        stats = place_blob(client, from, to, blob).await?;
        Ok::<(), RegistryError>(())
    })
    .await?;
    Ok(stats)
}

/// Mounts or copies `blob` into `to` (or finds it there).
async fn place_blob(
    client: &RegistryClient,
    from: &Reference,
    to: &Reference,
    blob: &BlobRef,
) -> Result<CopyStats, RegistryError> {
    let mut stats = CopyStats::default();
    if from.resolve_registry() == to.resolve_registry() {
        // A mount of a blob the destination already has answers 201 too.
        if client.mount_blob(to, from, &blob.digest).await? {
            stats.blobs_mounted += 1;
            return Ok(stats);
        }
    } else if client.blob_exists(to, &blob.digest).await? {
        stats.blobs_present += 1;
        return Ok(stats);
    }
    client.copy_blob(from, to, &blob.digest, blob.size).await?;
    stats.blobs_copied += 1;
    Ok(stats)
}
