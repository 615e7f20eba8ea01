//! File outputs (`local`, `tar`, `oci`) and `docker` (`--load`): staging
//! during the builds, then all-or-nothing placement in the publish phase.
//!
//! * While the builds run, every platform's solve streams its export into
//!   a **staging directory next to the destination**
//!   (`DIR/.NAME.mybake-RUN`, see [`Staging`]); `docker` stages in the
//!   system temporary directory. Nothing at a destination changes.
//! * [`prepare`] (publish phase, before any tag is written) turns the
//!   per-platform exports into the final artifacts, still in staging:
//!   - `local`: the platform's tree, or with several platforms one
//!     subdirectory per platform named like buildx (`linux_amd64`,
//!     `linux_arm_v7`);
//!   - `tar`: the platform's tarball, or with several platforms one tarball
//!     whose entries are under the same per-platform directories;
//!   - `oci`: an OCI image layout (a tarball, or a directory with
//!     `tar=false`) holding the merged multi-platform index (built by
//!     [`super::index::build_index`] exactly as for the registry: platforms
//!     in the target's order, attestation manifests kept, the target's
//!     `index:`/`manifest-descriptor:` annotations), `index.json` naming it
//!     after the first tag;
//!   - `docker`: the same layout as a tarball, named with every tag, for
//!     the Engine's `POST /images/load`.
//! * [`commit`] (after every target of the run succeeded, or per target
//!   with `--publish per-target`) loads the `docker` archives, then puts
//!   each artifact in place without destroying data ([`place`]): a `local`
//!   tree (and an `oci tar=false` layout) is merged into its directory,
//!   replacing same-path files and keeping every other entry; a `tar`/`oci`
//!   file replaces the destination file with one `rename(2)`.
//! * [`Staging`] removes whatever is left in staging when dropped, so a
//!   failed or interrupted run leaves every destination as it was; a later
//!   run removes the staging of a killed one ([`place::remove_stale`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::Digest as _;

use super::index::{
    build_index, flatten_platform_index, is_index_media_type, sha256_digest, AnnotationMode,
    BuiltIndex, IndexAnnotations, IndexEntry, ManifestDoc, Platform, OCI_INDEX,
};
use super::place;
use crate::exec::request::{platform_dir, FileExport, FileExportKind};

/// `io.containerd.image.name`.
pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
/// `org.opencontainers.image.ref.name`.
pub const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What a file output produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// The filesystem as a directory tree.
    Local,
    /// The filesystem as a tarball.
    Tar,
    /// An OCI image layout, a tarball when `tar`.
    Oci { tar: bool },
    /// Loaded into the local Docker Engine.
    Docker,
}

/// One file output of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutput {
    pub kind: OutputKind,
    /// Absolute destination (`None` for `docker`).
    pub dest: Option<PathBuf>,
}

impl FileOutput {
    /// The output type as written in the build file.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            OutputKind::Local => "local",
            OutputKind::Tar => "tar",
            OutputKind::Oci { .. } => "oci",
            OutputKind::Docker => "docker",
        }
    }
}

/// The file outputs of a target: its `output` entries of type `local`,
/// `tar`, `oci` (with `dest=`, `tar=true|false`) and `docker`, plus
/// `docker` when `load` (`--load`) and the target has none.
pub fn target_outputs(t: &crate::resolve::Target, load: bool) -> Result<Vec<FileOutput>, String> {
    let mut out = Vec::new();
    for o in t.objects(crate::attrs::A::Output) {
        let ty = o.get("type").map(|s| s.v.as_str()).unwrap_or("");
        let dest = o.get("dest").map(|d| PathBuf::from(&d.v));
        // A file destination that is a symlink: the file it points at is
        // replaced (staged beside it, so the rename stays on its file system).
        let file_dest = || dest.as_deref().map(place::real_file_dest);
        let need_dest = || {
            dest.clone()
                .ok_or_else(|| format!("output `{ty}` of `{}` needs `dest=`", t.name.v))
        };
        let kind = match ty {
            "local" => OutputKind::Local,
            "tar" => OutputKind::Tar,
            "oci" => {
                let tar = match o.get("tar").map(|v| v.v.as_str()) {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(v) => {
                        return Err(format!(
                            "output `oci` of `{}`: `tar` must be true or false, not {v:?}",
                            t.name.v
                        ))
                    }
                };
                OutputKind::Oci { tar }
            }
            "docker" => OutputKind::Docker,
            _ => continue,
        };
        let dest = match kind {
            OutputKind::Docker => None,
            OutputKind::Tar | OutputKind::Oci { tar: true } => {
                need_dest()?;
                file_dest()
            }
            _ => Some(need_dest()?),
        };
        out.push(FileOutput { kind, dest });
    }
    if load && !out.iter().any(|o| o.kind == OutputKind::Docker) {
        out.push(FileOutput {
            kind: OutputKind::Docker,
            dest: None,
        });
    }
    if out.iter().any(|o| o.kind == OutputKind::Docker) && t.list(crate::attrs::A::Tags).is_empty()
    {
        return Err(format!(
            "target `{}` is loaded into Docker (output \"docker\" or --load), but it has no `tags` to name the image",
            t.name.v
        ));
    }
    Ok(out)
}

/// The staging area of one run. Dropping it removes everything still in
/// staging, the lock files beside it and the directories it had to create
/// (only when left empty).
#[derive(Debug)]
pub struct Staging {
    run: String,
    /// Staging directories, per target, in output order.
    dirs: HashMap<String, Vec<PathBuf>>,
    /// Every staging entry, with its lock file (held while the run lives).
    entries: Vec<(PathBuf, PathBuf, File)>,
    /// Directories created for destinations and their parents (outermost
    /// first).
    created: Vec<PathBuf>,
    /// Stale staging of earlier, killed runs removed while creating this one.
    pub removed_stale: Vec<PathBuf>,
}

impl Staging {
    /// Creates the staging directories for `targets` (name → outputs) and
    /// returns them with the exporters each platform's solve needs.
    ///
    /// Where a staging entry goes (see [`place`] for why):
    /// * `local` / `oci tar=false` (`dest=DIR`): `DIR/.mybake-RUN`, DIR
    ///   created (with its parents) when missing;
    /// * `tar` / `oci` (`dest=FILE`): `PARENT/.FILE.mybake-RUN`;
    /// * `docker`: the system temporary directory.
    ///
    /// Stale staging of killed runs in those directories is removed first.
    pub fn create(
        targets: &[(String, Vec<FileOutput>)],
    ) -> io::Result<(Staging, HashMap<String, Vec<FileExport>>)> {
        let mut s = Staging {
            run: place::run_id(),
            dirs: HashMap::new(),
            entries: Vec::new(),
            created: Vec::new(),
            removed_stale: Vec::new(),
        };
        let mut exports = HashMap::new();
        let mut seen: HashSet<PathBuf> = HashSet::new();
        let mut scanned: HashSet<PathBuf> = HashSet::new();
        for (name, outputs) in targets {
            let mut list = Vec::new();
            let mut dirs = Vec::new();
            for (i, o) in outputs.iter().enumerate() {
                if let Some(d) = &o.dest {
                    if !seen.insert(d.clone()) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("{} is the destination of more than one output", d.display()),
                        ));
                    }
                }
                let dir = s.dir_for(name, i, o);
                if let Some(parent) = dir.parent() {
                    s.create_parents(parent)?;
                    if scanned.insert(parent.to_path_buf()) {
                        s.removed_stale.extend(place::remove_stale(parent));
                    }
                }
                let (lock_path, lock) = place::lock_for(&dir).map_err(|e| {
                    io::Error::new(e.kind(), format!("staging {}: {e}", dir.display()))
                })?;
                s.entries.push((dir.clone(), lock_path, lock));
                fs::create_dir(&dir).map_err(|e| {
                    io::Error::new(e.kind(), format!("staging {}: {e}", dir.display()))
                })?;
                dirs.push(dir.clone());
                let kind = match o.kind {
                    OutputKind::Local => FileExportKind::Local,
                    OutputKind::Tar => FileExportKind::Tar,
                    OutputKind::Oci { .. } | OutputKind::Docker => FileExportKind::Oci,
                };
                // One OCI archive per platform serves every `oci` and
                // `docker` output of the target (see [`prepare`]).
                if kind == FileExportKind::Oci && list.iter().any(|e: &FileExport| e.kind == kind) {
                    continue;
                }
                list.push(FileExport { kind, dir });
            }
            s.dirs.insert(name.clone(), dirs);
            exports.insert(name.clone(), list);
        }
        Ok((s, exports))
    }

    /// The run's id (part of every staging name).
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// The staging entry of one output (see [`Staging::create`]).
    fn dir_for(&self, target: &str, i: usize, o: &FileOutput) -> PathBuf {
        match (&o.dest, &o.kind) {
            (Some(dest), OutputKind::Local | OutputKind::Oci { tar: false }) => {
                dest.join(format!(".mybake-{}", self.run))
            }
            (Some(dest), _) => {
                let name = dest
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "out".into());
                dest.with_file_name(format!(".{name}.mybake-{}", self.run))
            }
            (None, _) => std::env::temp_dir().join(format!(
                "mybake-{}-{}-{i}",
                self.run,
                target.replace(['/', '\\'], "_")
            )),
        }
    }

    fn create_parents(&mut self, dir: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut p = Some(dir);
        while let Some(d) = p {
            if d.exists() {
                break;
            }
            missing.push(d.to_path_buf());
            p = d.parent();
        }
        for d in missing.into_iter().rev() {
            match fs::create_dir(&d) {
                Ok(()) => self.created.push(d),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The staging directories of `target`, in output order.
    pub fn dirs(&self, target: &str) -> &[PathBuf] {
        self.dirs.get(target).map(Vec::as_slice).unwrap_or(&[])
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        for (dir, lock_path, lock) in self.entries.drain(..) {
            place::remove_tree(&dir);
            // Removed while still held: no other run can take it meanwhile
            // and find the entry half gone.
            let _ = fs::remove_file(&lock_path);
            drop(lock);
        }
        for d in self.created.iter().rev() {
            // Only when empty: the run put nothing there.
            let _ = fs::remove_dir(d);
        }
    }
}

/// A target whose outputs are to be placed.
#[derive(Debug, Clone, Default)]
pub struct TargetFiles {
    pub name: String,
    /// The target's tags (full references).
    pub tags: Vec<String>,
    /// The target's `annotation` attribute.
    pub annotations: BTreeMap<String, String>,
    /// The platforms built, in the target's order.
    pub platforms: Vec<String>,
    /// Per platform, the result descriptor the solve returned
    /// (`containerimage.descriptor`), used for the index entry as the
    /// registry publish does.
    pub descriptors: Vec<Option<mybake_buildkit::Descriptor>>,
    pub outputs: Vec<FileOutput>,
}

/// One thing to do in [`commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// Put `from` (in staging) at `to`: merged into the directory `to`
    /// when `merge` (`local`, `oci tar=false`), else replacing the file.
    Move {
        target: String,
        kind: &'static str,
        from: PathBuf,
        to: PathBuf,
        merge: bool,
        /// The merged index (`oci`).
        digest: Option<String>,
    },
    /// Load the archive into the Engine.
    Load {
        target: String,
        archive: PathBuf,
        names: Vec<String>,
        digest: String,
    },
}

/// Builds every output's final artifact in staging (see the module
/// documentation). Touches no destination.
pub fn prepare(targets: &[TargetFiles], staging: &Staging) -> Result<Vec<Ready>, String> {
    let mut out = Vec::new();
    for t in targets {
        let dirs = staging.dirs(&t.name);
        let oci_source = t
            .outputs
            .iter()
            .zip(dirs)
            .find(|(o, _)| matches!(o.kind, OutputKind::Oci { .. } | OutputKind::Docker))
            .map(|(_, d)| d.clone());
        for (o, dir) in t.outputs.iter().zip(dirs) {
            let fail = |e: String| format!("target {:?}: output `{}`: {e}", t.name, o.type_name());
            let single = t.platforms.len() == 1;
            let export = |kind| FileExport {
                kind,
                dir: dir.clone(),
            };
            match &o.kind {
                OutputKind::Local => {
                    let from = if single {
                        export(FileExportKind::Local).path_for(&t.platforms[0])
                    } else {
                        dir.clone()
                    };
                    for p in &t.platforms {
                        let got = export(FileExportKind::Local).path_for(p);
                        if !got.is_dir() {
                            return Err(fail(format!("nothing was received for {p}")));
                        }
                    }
                    out.push(Ready::Move {
                        target: t.name.clone(),
                        kind: "local",
                        from,
                        to: o.dest.clone().expect("local has dest"),
                        merge: true,
                        digest: None,
                    });
                }
                OutputKind::Tar => {
                    let parts: Vec<(String, PathBuf)> = t
                        .platforms
                        .iter()
                        .map(|p| (platform_dir(p), export(FileExportKind::Tar).path_for(p)))
                        .collect();
                    let from = if single {
                        parts[0].1.clone()
                    } else {
                        let merged = dir.join("merged.tar");
                        merge_tars(&parts, &merged).map_err(|e| fail(e.to_string()))?;
                        merged
                    };
                    if !from.is_file() {
                        return Err(fail("nothing was received".into()));
                    }
                    out.push(Ready::Move {
                        target: t.name.clone(),
                        kind: "tar",
                        from,
                        to: o.dest.clone().expect("tar has dest"),
                        merge: false,
                        digest: None,
                    });
                }
                OutputKind::Oci { tar } => {
                    let source = oci_source.clone().expect("an oci output");
                    let layout = dir.join("layout");
                    let built = merge_layouts(t, &source, &layout).map_err(fail)?;
                    let names: Vec<String> = t.tags.iter().take(1).cloned().collect();
                    write_index_json(&layout, &built, &names).map_err(|e| fail(e.to_string()))?;
                    let from = if *tar {
                        let archive = dir.join("image.tar");
                        write_layout_tar(&layout, &archive).map_err(|e| fail(e.to_string()))?;
                        archive
                    } else {
                        layout
                    };
                    out.push(Ready::Move {
                        target: t.name.clone(),
                        kind: "oci",
                        from,
                        to: o.dest.clone().expect("oci has dest"),
                        merge: !*tar,
                        digest: Some(built.digest.clone()),
                    });
                }
                OutputKind::Docker => {
                    let source = oci_source.clone().expect("an oci output");
                    let layout = dir.join("layout");
                    let built = merge_layouts(t, &source, &layout).map_err(fail)?;
                    write_index_json(&layout, &built, &t.tags).map_err(|e| fail(e.to_string()))?;
                    let archive = dir.join("image.tar");
                    write_layout_tar(&layout, &archive).map_err(|e| fail(e.to_string()))?;
                    out.push(Ready::Load {
                        target: t.name.clone(),
                        archive,
                        names: t.tags.iter().map(|n| normalized_name(n)).collect(),
                        digest: built.digest.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// What [`commit`] did.
#[derive(Debug, Clone, Default)]
pub struct CommitReport {
    /// Human-readable lines, one per output.
    pub lines: Vec<String>,
    /// Per target, the metadata of its outputs (`--metadata-file`).
    pub metadata: BTreeMap<String, Vec<serde_json::Value>>,
}

/// Loads every `docker` archive into the Engine at `docker`, then moves
/// every artifact into place. Stops at the first failure (what was done is
/// in the error message).
pub async fn commit(
    ready: Vec<Ready>,
    docker: Option<&mybake_buildkit::DockerEndpoint>,
) -> Result<CommitReport, String> {
    let mut report = CommitReport::default();
    let mut done: Vec<String> = Vec::new();
    let failed = |done: &[String], e: String| {
        if done.is_empty() {
            e
        } else {
            format!("{e} (done before the failure: {})", done.join("; "))
        }
    };
    for r in ready.iter() {
        if let Ready::Load {
            target,
            archive,
            names,
            digest,
        } = r
        {
            let Some(endpoint) = docker else {
                return Err(failed(
                    &done,
                    format!(
                        "target {target:?}: output `docker`: DOCKER_HOST is not a Docker Engine"
                    ),
                ));
            };
            let lines = mybake_buildkit::engine::load_image(endpoint, archive)
                .await
                .map_err(|e| {
                    failed(
                        &done,
                        format!("target {target:?}: loading into Docker: {e}"),
                    )
                })?;
            let line = format!("[{target}] loaded {} ({digest})", names.join(", "));
            report.lines.push(line.clone());
            let _ = lines;
            done.push(line);
            report
                .metadata
                .entry(target.clone())
                .or_default()
                .push(json!({
                    "type": "docker",
                    "names": names,
                    "digest": digest,
                }));
        }
    }
    for r in ready {
        if let Ready::Move {
            target,
            kind,
            from,
            to,
            merge,
            digest,
        } = r
        {
            let fail = |e: String| {
                failed(
                    &done,
                    format!(
                        "target {target:?}: output `{kind}`: writing {}: {e}",
                        to.display()
                    ),
                )
            };
            let line = if merge {
                let m = tokio::task::block_in_place(|| place::merge(&from, &to)).map_err(fail)?;
                format!(
                    "[{target}] wrote {} ({kind}: {} new, {} replaced, everything else kept)",
                    to.display(),
                    m.added,
                    m.replaced
                )
            } else {
                place::replace_file(&from, &to).map_err(|e| fail(e.to_string()))?;
                format!("[{target}] wrote {} ({kind})", to.display())
            };
            report.lines.push(line.clone());
            done.push(line);
            let mut m = json!({ "type": kind, "dest": to });
            if let Some(d) = digest {
                m["digest"] = json!(d);
            }
            report.metadata.entry(target).or_default().push(m);
        }
    }
    Ok(report)
}

/// Containerd's normalized name of a reference (`app:1` →
/// `docker.io/library/app:1`, `r/app` → `docker.io/r/app:latest`).
pub fn normalized_name(reference: &str) -> String {
    let (name, tag) = split_tag(reference);
    let (host, rest) = match name.split_once('/') {
        Some((h, r)) if h.contains('.') || h.contains(':') || h == "localhost" => {
            (h.to_string(), r.to_string())
        }
        Some(_) => ("docker.io".to_string(), name.to_string()),
        None => ("docker.io".to_string(), format!("library/{name}")),
    };
    format!("{host}/{rest}:{}", tag.unwrap_or("latest"))
}

/// `r/app:1` → (`r/app`, `Some("1")`); a digest is left on the name.
fn split_tag(reference: &str) -> (&str, Option<&str>) {
    if reference.contains('@') {
        return (reference, None);
    }
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], Some(&reference[i + 1..])),
        _ => (reference, None),
    }
}

/// Writes `index.json` pointing at the merged index, one entry per name
/// (`io.containerd.image.name` = the normalized reference,
/// `org.opencontainers.image.ref.name` = its tag, as BuildKit writes them),
/// or one unnamed entry.
fn write_index_json(layout: &Path, built: &BuiltIndex, names: &[String]) -> io::Result<()> {
    let descriptor = |annotations: Option<serde_json::Value>| {
        let mut d = json!({
            "mediaType": OCI_INDEX,
            "digest": built.digest,
            "size": built.size(),
        });
        if let Some(a) = annotations {
            d["annotations"] = a;
        }
        d
    };
    let manifests: Vec<serde_json::Value> = if names.is_empty() {
        vec![descriptor(None)]
    } else {
        names
            .iter()
            .map(|n| {
                let full = normalized_name(n);
                let tag = split_tag(&full).1.unwrap_or("latest").to_string();
                descriptor(Some(
                    json!({ CONTAINERD_IMAGE_NAME: full, OCI_REF_NAME: tag }),
                ))
            })
            .collect()
    };
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&doc).map_err(io::Error::other)?,
    )
}

/// Merges the per-platform OCI archives of `t` (in `source`) into one
/// layout at `layout`: every blob of every archive, checked against its
/// digest, then the merged index, then only what it references is kept.
fn merge_layouts(t: &TargetFiles, source: &Path, layout: &Path) -> Result<BuiltIndex, String> {
    let blobs = layout.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(|e| e.to_string())?;
    let annotations = IndexAnnotations::split(&t.annotations, AnnotationMode::Build)?;
    let mut entries: Vec<IndexEntry> = Vec::new();
    for p in &t.platforms {
        let platform = Platform::parse(p)?;
        let archive = FileExport {
            kind: FileExportKind::Oci,
            dir: source.to_path_buf(),
        }
        .path_for(p);
        let index = extract_oci_archive(&archive, &blobs)
            .map_err(|e| format!("{}: {e}", archive.display()))?;
        let doc = ManifestDoc::parse(&index).map_err(|e| format!("index.json: {e}"))?;
        let [root] = doc.manifests.as_slice() else {
            return Err(format!(
                "the {p} archive's index.json has {} entries, expected 1",
                doc.manifests.len()
            ));
        };
        let reported = t
            .platforms
            .iter()
            .position(|x| x == p)
            .and_then(|i| t.descriptors.get(i).cloned().flatten())
            .filter(|d| d.digest == root.digest);
        let resolved = if is_index_media_type(&root.media_type) {
            let bytes = read_blob(&blobs, &root.digest)?;
            let inner = ManifestDoc::parse(&bytes).map_err(|e| format!("{}: {e}", root.digest))?;
            flatten_platform_index(&inner, &platform)?
        } else if let Some(d) = reported {
            vec![IndexEntry::from_descriptor(&d, Some(platform.clone()))]
        } else {
            let mut e = root.clone();
            e.annotations.clear();
            e.platform = Some(platform.clone());
            vec![e]
        };
        for e in resolved {
            if !entries.iter().any(|x| x == &e) {
                entries.push(e);
            }
        }
    }
    annotations.apply_to(&mut entries);
    let built = build_index(entries, annotations.index.clone());
    fs::write(blob_path(&blobs, &built.digest)?, &built.bytes).map_err(|e| e.to_string())?;
    // Keep only what the merged index references; check every blob is
    // there.
    let mut keep: HashSet<String> = HashSet::from([built.digest.clone()]);
    for m in &built.index.manifests {
        keep.insert(m.digest.clone());
        let bytes = read_blob(&blobs, &m.digest)?;
        let doc = ManifestDoc::parse(&bytes).map_err(|e| format!("{}: {e}", m.digest))?;
        for b in doc.config.iter().chain(doc.layers.iter()) {
            if b.is_foreign() {
                continue;
            }
            if !blob_path(&blobs, &b.digest)?.is_file() {
                return Err(format!("blob {} of {} is missing", b.digest, m.digest));
            }
            keep.insert(b.digest.clone());
        }
    }
    for e in fs::read_dir(&blobs).map_err(|e| e.to_string())?.flatten() {
        let name = format!("sha256:{}", e.file_name().to_string_lossy());
        if !keep.contains(&name) {
            let _ = fs::remove_file(e.path());
        }
    }
    Ok(built)
}

fn blob_path(blobs: &Path, digest: &str) -> Result<PathBuf, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("unsupported digest {digest:?}"))?;
    Ok(blobs.join(hex))
}

fn read_blob(blobs: &Path, digest: &str) -> Result<Vec<u8>, String> {
    let p = blob_path(blobs, digest)?;
    fs::read(&p).map_err(|e| format!("blob {digest}: {e}"))
}

/// Extracts the blobs of an OCI layout archive into `blobs` (checking
/// each against its name) and returns its `index.json`.
fn extract_oci_archive(archive: &Path, blobs: &Path) -> Result<Vec<u8>, String> {
    let mut a = tar::Archive::new(File::open(archive).map_err(|e| e.to_string())?);
    let mut index = None;
    for entry in a.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let text = path.to_string_lossy().trim_start_matches("./").to_string();
        if text == "index.json" {
            let mut v = Vec::new();
            entry.read_to_end(&mut v).map_err(|e| e.to_string())?;
            index = Some(v);
            continue;
        }
        let Some(hex) = text.strip_prefix("blobs/sha256/") else {
            continue;
        };
        let digest = format!("sha256:{hex}");
        let dest = blob_path(blobs, &digest)?;
        if dest.exists() {
            continue;
        }
        let tmp = dest.with_extension("partial");
        let mut f = File::create(&tmp).map_err(|e| e.to_string())?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            f.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
        let got: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != hex {
            let _ = fs::remove_file(&tmp);
            return Err(format!("blob {digest} has digest sha256:{got}"));
        }
        fs::rename(&tmp, &dest).map_err(|e| e.to_string())?;
    }
    index.ok_or_else(|| "no index.json".to_string())
}

/// Writes the layout directory as a tarball: `oci-layout`, `index.json`,
/// then the blobs in name order, with fixed times and modes.
fn write_layout_tar(layout: &Path, out: &Path) -> io::Result<()> {
    let mut b = tar::Builder::new(io::BufWriter::new(File::create(out)?));
    let header = |size: u64, dir: bool| {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_mtime(0);
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h
    };
    for name in ["oci-layout", "index.json"] {
        let data = fs::read(layout.join(name))?;
        b.append_data(&mut header(data.len() as u64, false), name, data.as_slice())?;
    }
    for d in ["blobs/", "blobs/sha256/"] {
        b.append_data(&mut header(0, true), d, io::empty())?;
    }
    let mut names: Vec<String> = fs::read_dir(layout.join("blobs/sha256"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let f = File::open(layout.join("blobs/sha256").join(&n))?;
        let len = f.metadata()?.len();
        b.append_data(&mut header(len, false), format!("blobs/sha256/{n}"), f)?;
    }
    b.into_inner()?.flush()
}

/// Writes one tarball holding each platform's tarball under its directory
/// (`linux_amd64/…`); hard link targets get the same prefix, symlink
/// targets are kept.
fn merge_tars(parts: &[(String, PathBuf)], out: &Path) -> io::Result<()> {
    let mut b = tar::Builder::new(io::BufWriter::new(File::create(out)?));
    for (dir, path) in parts {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, format!("{dir}/"), io::empty())?;
        let mut a = tar::Archive::new(File::open(path)?);
        for entry in a.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            let name = name.trim_start_matches("./").trim_start_matches('/');
            if name.is_empty() {
                continue;
            }
            let full = format!("{dir}/{name}");
            let mut h = entry.header().clone();
            match h.entry_type() {
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()?
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let target = format!(
                        "{dir}/{}",
                        target.trim_start_matches("./").trim_start_matches('/')
                    );
                    b.append_link(&mut h, &full, &target)?;
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()?
                        .map(|l| l.into_owned())
                        .unwrap_or_default();
                    b.append_link(&mut h, &full, &target)?;
                }
                tar::EntryType::XHeader
                | tar::EntryType::XGlobalHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink => {}
                _ => {
                    b.append_data(&mut h, &full, &mut entry)?;
                }
            }
        }
    }
    b.into_inner()?.flush()
}

/// `sha256:` of a file (for tests and checks).
pub fn file_digest(path: &Path) -> io::Result<String> {
    Ok(sha256_digest(&fs::read(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalized_name("app:1"), "docker.io/library/app:1");
        assert_eq!(normalized_name("r/app"), "docker.io/r/app:latest");
        assert_eq!(
            normalized_name("localhost:5000/a/b:dev"),
            "localhost:5000/a/b:dev"
        );
        assert_eq!(
            normalized_name("localhost:5000/a"),
            "localhost:5000/a:latest"
        );
    }

    #[test]
    fn tars_merge_under_platform_dirs() {
        let d = tempfile::tempdir().unwrap();
        let mut parts = Vec::new();
        for p in ["linux_amd64", "linux_arm64"] {
            let path = d.path().join(format!("{p}.tar"));
            let mut b = tar::Builder::new(File::create(&path).unwrap());
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_mode(0o644);
            b.append_data(&mut h, "etc/x", &b"hi"[..]).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            b.append_link(&mut h, "etc/y", "etc/x").unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, "sh", "/bin/busybox").unwrap();
            b.into_inner().unwrap().flush().unwrap();
            parts.push((p.to_string(), path));
        }
        let out = d.path().join("m.tar");
        merge_tars(&parts, &out).unwrap();
        let mut a = tar::Archive::new(File::open(&out).unwrap());
        let got: Vec<(String, Option<String>)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.link_name()
                        .unwrap()
                        .map(|l| l.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("linux_amd64/".into(), None),
                ("linux_amd64/etc/x".into(), None),
                ("linux_amd64/etc/y".into(), Some("linux_amd64/etc/x".into())),
                ("linux_amd64/sh".into(), Some("/bin/busybox".into())),
                ("linux_arm64/".into(), None),
                ("linux_arm64/etc/x".into(), None),
                ("linux_arm64/etc/y".into(), Some("linux_arm64/etc/x".into())),
                ("linux_arm64/sh".into(), Some("/bin/busybox".into())),
            ]
        );
    }

    #[test]
    fn bad_blobs_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        let name = format!("blobs/sha256/{}", "0".repeat(64));
        b.append_data(&mut h, &name, &b"hi"[..]).unwrap();
        b.into_inner().unwrap().flush().unwrap();
        let blobs = d.path().join("blobs");
        fs::create_dir(&blobs).unwrap();
        let err = extract_oci_archive(&path, &blobs).unwrap_err();
        assert!(err.contains("has digest"), "{err}");
        assert_eq!(fs::read_dir(&blobs).unwrap().count(), 0);
    }
}
