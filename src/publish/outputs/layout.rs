//! Building the final artifacts in staging: OCI image layouts (merged
//! multi-platform index, `index.json`, the layout tarball) and merged
//! per-platform tarballs.

use super::*;

/// Containerd's normalized name of a reference (`app:1` →
/// `docker.io/library/app:1`, `r/app` → `docker.io/r/app:latest`), by the
/// one reference parser. Tags are checked at resolve; a text that is no
/// reference is returned as it is.
pub fn normalized_name(reference: &str) -> String {
    match crate::oci::reference::parse(reference) {
        Ok(r) => format!("{}:{}", r.normalized_name(), r.tag.unwrap_or("latest")),
        Err(_) => reference.to_string(),
    }
}

/// The tag of a reference (`latest` when none is written).
pub(super) fn tag_of(reference: &str) -> &str {
    crate::oci::reference::parse(reference)
        .ok()
        .and_then(|r| r.tag)
        .unwrap_or("latest")
}

/// Writes `index.json` pointing at the merged index, one entry per name
/// (`io.containerd.image.name` = the normalized reference,
/// `org.opencontainers.image.ref.name` = its tag, as BuildKit writes them),
/// or one unnamed entry.
pub(super) fn write_index_json(
    layout: &Path,
    built: &BuiltIndex,
    names: &[String],
) -> io::Result<()> {
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
                let tag = tag_of(&full).to_string();
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
pub(super) fn merge_layouts(
    t: &TargetFiles,
    source: &Path,
    layout: &Path,
) -> Result<BuiltIndex, String> {
    let blobs = layout.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(|e| e.to_string())?;
    let annotations = IndexAnnotations::split(&t.annotations, AnnotationMode::Build)?;
    let mut entries: Vec<Descriptor> = Vec::new();
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
            vec![d.with_platform(Some(platform.clone()))]
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

pub(super) fn blob_path(blobs: &Path, digest: &str) -> Result<PathBuf, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("unsupported digest {digest:?}"))?;
    Ok(blobs.join(hex))
}

pub(super) fn read_blob(blobs: &Path, digest: &str) -> Result<Vec<u8>, String> {
    let p = blob_path(blobs, digest)?;
    fs::read(&p).map_err(|e| format!("blob {digest}: {e}"))
}

/// Extracts the blobs of an OCI layout archive into `blobs` (checking
/// each against its name) and returns its `index.json`.
pub(super) fn extract_oci_archive(archive: &Path, blobs: &Path) -> Result<Vec<u8>, String> {
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
pub(super) fn write_layout_tar(layout: &Path, out: &Path) -> io::Result<()> {
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
pub(super) fn merge_tars(parts: &[(String, PathBuf)], out: &Path) -> io::Result<()> {
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
