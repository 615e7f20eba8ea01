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
//! * [`Staging`] (`staging.rs`) removes whatever is left in staging when
//!   dropped, so a failed or interrupted run leaves every destination as it
//!   was; a later run removes the staging of a killed one
//!   ([`place::remove_stale`]).
//!
//! Files: this one (output parsing, [`prepare`], [`commit`]), `staging.rs`,
//! `layout.rs` (OCI layouts and tarballs built in staging), and
//! `../place.rs` (placement without destroying data).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::Digest as _;

use super::index::{
    build_index, flatten_platform_index, is_index_media_type, sha256_digest, AnnotationMode,
    BuiltIndex, Descriptor, IndexAnnotations, ManifestDoc, Platform, OCI_INDEX,
};
use super::place;

mod layout;
mod staging;

use crate::exec::request::{platform_dir, FileExport, FileExportKind};
use layout::*;
pub use layout::{file_digest, normalized_name};
pub use staging::Staging;

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
    use crate::resolve::spec::OutputKind as Typed;
    let mut out = Vec::new();
    for o in &t.spec.outputs {
        // A file destination that is a symlink: the file it points at is
        // replaced (staged beside it, so the rename stays on its file system).
        let (kind, dest) = match &o.kind {
            Typed::Local { dest } => (OutputKind::Local, Some(dest.v.clone())),
            Typed::Tar { dest } => (OutputKind::Tar, Some(place::real_file_dest(&dest.v))),
            Typed::Oci { dest, tar: true } => (
                OutputKind::Oci { tar: true },
                Some(place::real_file_dest(&dest.v)),
            ),
            Typed::Oci { dest, tar: false } => {
                (OutputKind::Oci { tar: false }, Some(dest.v.clone()))
            }
            Typed::Docker => (OutputKind::Docker, None),
            Typed::Registry | Typed::CacheOnly => continue,
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
    pub descriptors: Vec<Option<crate::oci::Descriptor>>,
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
        /// Its size in bytes (the metadata file's descriptor).
        size: Option<usize>,
    },
    /// Load the archive into the Engine.
    Load {
        target: String,
        archive: PathBuf,
        names: Vec<String>,
        digest: String,
        /// The merged index's size in bytes.
        size: usize,
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
                        size: None,
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
                        size: None,
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
                        size: Some(built.bytes.len()),
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
                        size: built.bytes.len(),
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
            size,
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
                    "size": size,
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
            size,
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
            if let Some(s) = size {
                m["size"] = json!(s);
            }
            report.metadata.entry(target).or_default().push(m);
        }
    }
    Ok(report)
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
}
