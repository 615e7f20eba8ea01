//! Putting file outputs in place without destroying data.
//!
//! The rules (spec, "Outputs never destroy data"):
//!
//! * a **directory** destination (`local dest=DIR`, `oci tar=false
//!   dest=DIR`) receives the result's files: each one replaces the entry of
//!   the same path (a file or a symlink, never a directory), every other
//!   entry of DIR is kept. A result directory goes into an existing
//!   directory of the same path, entry by entry. Where the result and DIR
//!   disagree on what a path is (a result file where DIR has a directory, a
//!   result directory where DIR has a file or a symlink), nothing at all is
//!   written and the conflict is reported: mybake never removes a directory
//!   it did not create, and never writes through a symlink inside DIR.
//! * a **file** destination (`tar`, `oci`) is replaced with one `rename(2)`:
//!   readers see the old file or the new one, never a mix.
//! * [`check`] refuses, before anything is built, a destination that cannot
//!   be written that way: a directory where a file goes, a file where a
//!   directory goes, a non-empty directory that is not an OCI layout for
//!   `oci tar=false`.
//!
//! Staging (see [`super::outputs::Staging`]) lives beside or inside the
//! destination, so every move is a rename on one file system. Each staging
//! entry `NAME` has a lock file `NAME.lock` next to it, created and locked
//! before the entry exists and held for the whole run; [`remove_stale`]
//! removes only staging entries whose lock nobody holds any more (their run
//! was killed), so a later run cleans up after `kill -9` without ever
//! touching a live run's staging.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// What a destination has to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    /// A directory the result is merged into (`local`).
    Dir,
    /// A directory holding an OCI image layout (`oci tar=false`).
    OciDir,
    /// A regular file (`tar`, `oci`).
    File,
}

/// Checks, before anything is built, that the output can be written at
/// `dest` under the rules above. The message says what is there and what
/// to do.
pub fn check(kind: DestKind, dest: &Path) -> Result<(), String> {
    match fs::metadata(dest) {
        Ok(m) => match kind {
            DestKind::Dir if m.is_dir() => Ok(()),
            DestKind::Dir => Err(format!(
                "{} exists and is not a directory; `local` writes a directory tree into it",
                dest.display()
            )),
            DestKind::OciDir if !m.is_dir() => Err(format!(
                "{} exists and is not a directory; `oci` with tar=false writes an OCI layout directory",
                dest.display()
            )),
            DestKind::OciDir => {
                let mut entries = fs::read_dir(dest)
                    .map_err(|e| format!("cannot read {}: {e}", dest.display()))?;
                if entries.next().is_none() || dest.join("oci-layout").is_file() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} is a non-empty directory that is not an OCI layout (no `oci-layout` file); \
                         `oci` with tar=false writes only into an empty directory or an existing layout",
                        dest.display()
                    ))
                }
            }
            DestKind::File if m.is_dir() => Err(format!(
                "{} is a directory; this output writes one file there (name a file, e.g. dest=\"{}\")",
                dest.display(),
                dest.join("image.tar").display()
            )),
            DestKind::File if !m.is_file() => Err(format!(
                "{} exists and is not a regular file; it would be replaced",
                dest.display()
            )),
            DestKind::File => Ok(()),
        },
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
            // The nearest existing ancestor must be a directory.
            let mut p = dest.parent();
            while let Some(d) = p {
                match fs::metadata(d) {
                    Ok(m) if m.is_dir() => return Ok(()),
                    Ok(_) => {
                        return Err(format!(
                            "{} is not a directory, so {} cannot be created",
                            d.display(),
                            dest.display()
                        ))
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                        ) =>
                    {
                        p = d.parent()
                    }
                    Err(e) => return Err(format!("{}: {e}", d.display())),
                }
            }
            Ok(())
        }
        Err(e) => Err(format!("{}: {e}", dest.display())),
    }
}

/// Where a file output really writes: a symlink at `dest` is followed (the
/// file it points at is replaced, as writing to the path would), anything
/// else is `dest` itself.
pub fn real_file_dest(dest: &Path) -> PathBuf {
    match fs::symlink_metadata(dest) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(dest).unwrap_or(dest.to_path_buf()),
        _ => dest.to_path_buf(),
    }
}

/// What [`merge`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// Entries (files, symlinks, whole directories) that were new at the
    /// destination.
    pub added: usize,
    /// Files and symlinks of the destination replaced by the result's.
    pub replaced: usize,
}

/// Moves the contents of the directory `src` into the directory `dst`
/// (created when missing, with its missing parents): see the module
/// documentation. Checks every path first; on a conflict nothing is moved.
/// Iterative: no recursion depth set by the result's tree.
pub fn merge(src: &Path, dst: &Path) -> Result<Merged, String> {
    let mut moves: Vec<(PathBuf, PathBuf, bool)> = Vec::new();
    let mut conflicts: Vec<String> = Vec::new();
    match fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => {}
        Ok(_) if fs::metadata(dst).map(|m| m.is_dir()).unwrap_or(false) => {}
        Ok(_) => return Err(format!("{} is not a directory", dst.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dst).map_err(|e| format!("creating {}: {e}", dst.display()))?;
        }
        Err(e) => return Err(format!("{}: {e}", dst.display())),
    }
    let mut stack = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((s, d)) = stack.pop() {
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(&s)
            .map_err(|e| format!("reading {}: {e}", s.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("reading {}: {e}", s.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let from = e.path();
            let to = d.join(e.file_name());
            let from_dir = e
                .file_type()
                .map_err(|e| format!("{}: {e}", from.display()))?
                .is_dir();
            match fs::symlink_metadata(&to) {
                Err(err) if err.kind() == io::ErrorKind::NotFound => moves.push((from, to, false)),
                Err(err) => return Err(format!("{}: {err}", to.display())),
                Ok(m) if from_dir && m.is_dir() => {
                    ensure_writable(&from);
                    stack.push((from, to));
                }
                Ok(m) if !from_dir && !m.is_dir() => moves.push((from, to, true)),
                Ok(m) => conflicts.push(if from_dir {
                    format!(
                        "{} is a {} where the result has a directory",
                        to.display(),
                        if m.file_type().is_symlink() {
                            "symlink"
                        } else {
                            "file"
                        }
                    )
                } else {
                    format!(
                        "{} is a directory where the result has a file",
                        to.display()
                    )
                }),
            }
        }
    }
    if !conflicts.is_empty() {
        let n = conflicts.len();
        conflicts.sort();
        conflicts.truncate(5);
        return Err(format!(
            "{n} path{} of the result conflict{} with what is there, so nothing was written: {}{}",
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" },
            conflicts.join("; "),
            if n > 5 { "; …" } else { "" }
        ));
    }
    let total = moves.len();
    let mut done = Merged::default();
    for (from, to, replaces) in moves {
        fs::rename(&from, &to).map_err(|e| {
            format!(
                "moving into {}: {e} ({} of {total} entries were placed before this one)",
                to.display(),
                done.added + done.replaced
            )
        })?;
        if replaces {
            done.replaced += 1;
        } else {
            done.added += 1;
        }
    }
    Ok(done)
}

/// Received trees may hold read-only directories (`0555`): moving entries
/// out of one needs write permission on it (when not root).
fn ensure_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = fs::symlink_metadata(dir) {
        let mode = m.permissions().mode();
        if m.is_dir() && mode & 0o700 != 0o700 {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700));
        }
    }
}

/// Replaces (or creates) the file `to` with the file `from`, atomically.
pub fn replace_file(from: &Path, to: &Path) -> io::Result<()> {
    if let Ok(m) = fs::symlink_metadata(to) {
        if m.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "a directory is there now; it was left as it is",
            ));
        }
    }
    fs::rename(from, to)
}

/// A run's id: `PID-NANOS` (8 hex digits), part of every staging name.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos:08x}", std::process::id())
}

/// The run id at the end of a staging entry's name (`….mybake-PID-HEX`,
/// or `mybake-PID-HEX-…` in the temporary directory), if it is one.
fn staging_run(name: &str) -> Option<(u32, &str)> {
    let tail = if let Some(rest) = name.strip_prefix("mybake-") {
        // Temporary directory: `mybake-PID-HEX-TARGET-I`.
        let mut it = rest.splitn(3, '-');
        let (pid, hex) = (it.next()?, it.next()?);
        it.next()?;
        &rest[..pid.len() + 1 + hex.len()]
    } else {
        let i = name.rfind(".mybake-")?;
        let rest = &name[i + ".mybake-".len()..];
        // `.NAME.mybake-old-RUN` (an earlier version's moved-aside
        // destination: the user's data) is never a staging entry.
        if rest.starts_with("old-") || (i > 0 && !name.starts_with('.')) {
            return None;
        }
        rest
    };
    let (pid, hex) = tail.split_once('-')?;
    let ok = !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && hex.len() == 8
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then(|| (pid.parse().ok()).map(|p| (p, tail)))?
}

/// Creates the lock file `NAME.lock` beside `entry` and locks it; the run
/// holds it until the staging entry is gone. The file is created here
/// (`O_EXCL`: an existing file of that name is never taken over, so removing
/// it later removes only what this run made), and it is checked to still be
/// the file at that path once locked: [`remove_stale`] of another run may
/// have removed it between the two steps, in which case it is made again.
pub fn lock_for(entry: &Path) -> io::Result<(PathBuf, File)> {
    use std::os::unix::fs::MetadataExt;
    let path = lock_path(entry);
    for _ in 0..8 {
        let f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        f.lock()?;
        let (held, at_path) = (f.metadata()?, fs::metadata(&path));
        match at_path {
            Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => return Ok((path, f)),
            // Removed meanwhile (as a lock nobody held): make it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            // Another file is there now: not ours to remove.
            _ => break,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{} keeps changing under this run", path.display()),
    ))
}

fn lock_path(entry: &Path) -> PathBuf {
    let mut s = entry.as_os_str().to_os_string();
    s.push(".lock");
    PathBuf::from(s)
}

/// Removes the staging entries in `dir` left by runs that no longer exist
/// (killed before they could clean up) and returns what was removed. An
/// entry is stale when its lock file exists and nobody holds it, or, for
/// an entry without a lock file (an earlier version's), when no process
/// with its pid exists. Anything else in `dir` is left alone.
pub fn remove_stale(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return removed;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".lock") {
            continue;
        }
        let Some((pid, _)) = staging_run(name) else {
            continue;
        };
        if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let entry = e.path();
        let lock = lock_path(&entry);
        let stale = match File::open(&lock) {
            Ok(f) => match f.try_lock() {
                Ok(()) => {
                    remove_tree(&entry);
                    let _ = fs::remove_file(&lock);
                    drop(f);
                    removed.push(entry);
                    continue;
                }
                Err(_) => false,
            },
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
            }
            Err(_) => false,
        };
        if stale {
            remove_tree(&entry);
            removed.push(entry);
        }
    }
    // Lock files whose entry is gone and that nobody holds.
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(entry_name) = name.to_str().and_then(|n| n.strip_suffix(".lock")) else {
                continue;
            };
            if staging_run(entry_name).is_none() || dir.join(entry_name).exists() {
                continue;
            }
            if let Ok(f) = File::open(e.path()) {
                if f.try_lock().is_ok() && !dir.join(entry_name).exists() {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
    removed
}

/// Removes a tree mybake created (a staging entry), read-only directories
/// included. Never follows symlinks.
pub fn remove_tree(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            // Iteratively: no recursion depth set by the tree.
            let mut stack = vec![p.to_path_buf()];
            while let Some(d) = stack.pop() {
                ensure_writable(&d);
                if let Ok(rd) = fs::read_dir(&d) {
                    for e in rd.flatten() {
                        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            stack.push(e.path());
                        }
                    }
                }
            }
            let _ = fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// Every entry below `dir`: path, and contents (`/` for a directory,
    /// `-> target` for a symlink).
    fn listing(dir: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                let t = e.file_type().unwrap();
                if t.is_symlink() {
                    out.push((rel, format!("-> {}", fs::read_link(&p).unwrap().display())));
                } else if t.is_dir() {
                    out.push((rel, "/".into()));
                    stack.push(p);
                } else {
                    out.push((rel, fs::read_to_string(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    fn write(p: &Path, s: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    }

    #[test]
    fn merge_keeps_every_other_entry_and_replaces_same_paths() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("project"));
        write(&dst.join(".git/HEAD"), "ref: refs/heads/main\n");
        write(&dst.join("mybake.kdl"), "target \"x\" {}\n");
        write(&dst.join("src/main.rs"), "fn main() {}\n");
        write(&dst.join("bin/old-tool"), "old tool\n");
        write(&dst.join("bin/app"), "old app\n");
        symlink("app", dst.join("bin/link")).unwrap();
        write(&src.join("bin/app"), "new app\n");
        write(&src.join("bin/link"), "now a file\n");
        write(&src.join("share/doc/README"), "doc\n");
        write(&src.join("top"), "top\n");
        let m = merge(&src, &dst).unwrap();
        assert_eq!(
            m,
            Merged {
                added: 2,
                replaced: 2
            }
        );
        assert_eq!(
            listing(&dst),
            [
                (".git", "/"),
                (".git/HEAD", "ref: refs/heads/main\n"),
                ("bin", "/"),
                ("bin/app", "new app\n"),
                ("bin/link", "now a file\n"),
                ("bin/old-tool", "old tool\n"),
                ("mybake.kdl", "target \"x\" {}\n"),
                ("share", "/"),
                ("share/doc", "/"),
                ("share/doc/README", "doc\n"),
                ("src", "/"),
                ("src/main.rs", "fn main() {}\n"),
                ("top", "top\n"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn merge_conflicts_write_nothing() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        // The result has a file where the destination has a directory with
        // the user's data, a directory where it has a file, and a directory
        // where it has a symlink to a directory outside.
        write(&dst.join("data/keep"), "user data\n");
        write(&dst.join("conf"), "user conf\n");
        fs::create_dir_all(t.path().join("outside")).unwrap();
        symlink(t.path().join("outside"), dst.join("lib")).unwrap();
        write(&src.join("data"), "file\n");
        write(&src.join("conf/x"), "x\n");
        write(&src.join("lib/evil"), "x\n");
        write(&src.join("fine"), "would be fine\n");
        let before = listing(&dst);
        let e = merge(&src, &dst).unwrap_err();
        assert!(e.contains("3 paths of the result conflict"), "{e}");
        assert!(
            e.contains("data is a directory where the result has a file"),
            "{e}"
        );
        assert!(
            e.contains("conf is a file where the result has a directory"),
            "{e}"
        );
        assert!(
            e.contains("lib is a symlink where the result has a directory"),
            "{e}"
        );
        assert_eq!(listing(&dst), before);
        assert_eq!(fs::read_dir(t.path().join("outside")).unwrap().count(), 0);
    }

    #[test]
    fn merge_creates_a_missing_destination_and_handles_read_only_dirs() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("a/b/out"));
        write(&src.join("deep/er/f"), "x\n");
        fs::set_permissions(src.join("deep"), fs::Permissions::from_mode(0o555)).unwrap();
        merge(&src, &dst).unwrap();
        assert_eq!(fs::read_to_string(dst.join("deep/er/f")).unwrap(), "x\n");
        // Again, into the existing read-only directory of the first result.
        let src2 = t.path().join("src2");
        write(&src2.join("deep/er/g"), "y\n");
        fs::set_permissions(src2.join("deep"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(dst.join("deep"), fs::Permissions::from_mode(0o755)).unwrap();
        merge(&src2, &dst).unwrap();
        assert_eq!(fs::read_to_string(dst.join("deep/er/f")).unwrap(), "x\n");
        assert_eq!(fs::read_to_string(dst.join("deep/er/g")).unwrap(), "y\n");
    }

    #[test]
    fn merge_handles_deep_trees() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        let mut deep = src.clone();
        // Deep, within PATH_MAX (4096 bytes).
        for _ in 0..1800 {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("f"), "bottom").unwrap();
        let mut deep_dst = dst.clone();
        for _ in 0..900 {
            deep_dst.push("d");
        }
        fs::create_dir_all(&deep_dst).unwrap();
        merge(&src, &dst).unwrap();
        let mut p = dst.clone();
        for _ in 0..1800 {
            p.push("d");
        }
        assert_eq!(fs::read_to_string(p.join("f")).unwrap(), "bottom");
        remove_tree(&dst);
        assert!(!dst.exists());
    }

    #[test]
    fn checks_before_building() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        write(&d.join("file"), "x");
        write(&d.join("proj/src/a"), "a");
        fs::create_dir(d.join("empty")).unwrap();
        write(&d.join("layout/oci-layout"), "{}");
        write(&d.join("layout/index.json"), "{}");
        assert!(check(DestKind::Dir, &d.join("proj")).is_ok());
        assert!(check(DestKind::Dir, &d.join("new/sub")).is_ok());
        let e = check(DestKind::Dir, &d.join("file")).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        let e = check(DestKind::Dir, &d.join("file/sub")).unwrap_err();
        assert!(e.contains("cannot be created"), "{e}");
        assert!(check(DestKind::File, &d.join("file")).is_ok());
        assert!(check(DestKind::File, &d.join("new.tar")).is_ok());
        let e = check(DestKind::File, &d.join("proj")).unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        let e = check(DestKind::File, Path::new("/dev/null")).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(check(DestKind::OciDir, &d.join("empty")).is_ok());
        assert!(check(DestKind::OciDir, &d.join("layout")).is_ok());
        assert!(check(DestKind::OciDir, &d.join("missing")).is_ok());
        let e = check(DestKind::OciDir, &d.join("proj")).unwrap_err();
        assert!(e.contains("not an OCI layout"), "{e}");
        let e = check(DestKind::OciDir, &d.join("file")).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn file_replace_is_one_rename_and_refuses_directories() {
        let t = tempfile::tempdir().unwrap();
        let (from, to) = (t.path().join(".new"), t.path().join("app.tar"));
        fs::write(&from, "new").unwrap();
        fs::write(&to, "old").unwrap();
        replace_file(&from, &to).unwrap();
        assert_eq!(fs::read_to_string(&to).unwrap(), "new");
        assert!(!from.exists());
        fs::write(&from, "new").unwrap();
        let dir = t.path().join("dir.tar");
        write(&dir.join("keep"), "k");
        assert!(replace_file(&from, &dir).is_err());
        assert_eq!(fs::read_to_string(dir.join("keep")).unwrap(), "k");
        // A symlink destination: the file it points at is what gets replaced.
        let real = t.path().join("real.tar");
        fs::write(&real, "old").unwrap();
        symlink(&real, t.path().join("link.tar")).unwrap();
        assert_eq!(
            real_file_dest(&t.path().join("link.tar")),
            fs::canonicalize(&real).unwrap()
        );
    }

    #[test]
    fn lock_for_never_takes_over_an_existing_file() {
        let t = tempfile::tempdir().unwrap();
        let entry = t.path().join(".mybake-7-0000abcd");
        fs::write(lock_path(&entry), "a user's file").unwrap();
        let e = lock_for(&entry).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            fs::read_to_string(lock_path(&entry)).unwrap(),
            "a user's file"
        );
        fs::remove_file(lock_path(&entry)).unwrap();
        let (path, _held) = lock_for(&entry).unwrap();
        assert_eq!(path, lock_path(&entry));
    }

    /// Every staging name this module recognises is one the context walk
    /// (`mybake-buildkit`) leaves out, and the other way round: the two
    /// crates agree on the pattern.
    #[test]
    fn the_context_walk_skips_exactly_this_staging() {
        use mybake_buildkit::filesync::walk::is_mybake_staging;
        for name in [
            ".mybake-123-0000abcd",
            ".app.tar.mybake-9-deadbeef",
            ".mybake-123-0000abcd.lock",
        ] {
            let entry = name.strip_suffix(".lock").unwrap_or(name);
            assert!(staging_run(entry).is_some(), "{name}");
            assert!(is_mybake_staging(name.as_bytes()), "{name}");
        }
        for name in [
            ".mybake-notes",
            "app.mybake-9-deadbeef",
            ".mybake-9-DEADBEEF",
        ] {
            assert!(staging_run(name).is_none(), "{name}");
            assert!(!is_mybake_staging(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn staging_names() {
        assert_eq!(
            staging_run(".mybake-123-0000abcd"),
            Some((123, "123-0000abcd"))
        );
        assert_eq!(
            staging_run(".app.tar.mybake-9-deadbeef"),
            Some((9, "9-deadbeef"))
        );
        assert_eq!(
            staging_run("mybake-77-deadbeef-api-0"),
            Some((77, "77-deadbeef"))
        );
        assert_eq!(staging_run(".app.mybake-old-9-deadbeef"), None);
        assert_eq!(staging_run(".mybake-9-deadbee"), None);
        assert_eq!(staging_run(".mybake-9-DEADBEEF"), None);
        assert_eq!(staging_run("app.mybake-9-deadbeef"), None);
        assert_eq!(staging_run("mybake.kdl"), None);
        assert_eq!(staging_run(".mybake-x-deadbeef"), None);
    }

    #[test]
    fn stale_staging_is_removed_and_nothing_else() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        // A killed run's staging: lock file present, nobody holds it.
        let dead = d.join(".out.mybake-4000000-0000dead");
        write(&dead.join("linux_amd64/f"), "partial");
        fs::set_permissions(dead.join("linux_amd64"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::write(lock_path(&dead), "").unwrap();
        // A live run's staging (this process holds the lock).
        let live = d.join(".mybake-4000001-0000beef");
        let (_path, held) = lock_for(&live).unwrap();
        write(&live.join("f"), "live");
        // An earlier version's staging without a lock, pid gone.
        let old = d.join(".x.tar.mybake-4000002-00000001");
        write(&old.join("a.tar"), "t");
        // An earlier version's moved-aside destination: user data.
        let aside = d.join(".out.mybake-old-4000003-00000002");
        write(&aside.join("user"), "u");
        // Look-alikes and user files.
        write(&d.join("mybake.kdl"), "k");
        write(&d.join(".mybake-notes/x"), "n");
        write(&d.join(".y.mybake-4000004-00000003"), "a file, not a dir");
        let mut removed = remove_stale(d);
        removed.sort();
        assert_eq!(removed, [dead.clone(), old.clone()]);
        assert!(!dead.exists() && !lock_path(&dead).exists());
        assert!(live.join("f").exists() && lock_path(&live).exists());
        assert!(aside.join("user").exists());
        assert!(d.join("mybake.kdl").exists() && d.join(".mybake-notes/x").exists());
        assert!(d.join(".y.mybake-4000004-00000003").is_file());
        drop(held);
        // Its run is gone now: the next run removes it.
        assert_eq!(remove_stale(d), [live]);
    }
}
