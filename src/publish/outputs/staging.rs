//! Where file outputs are staged while the builds run, and their cleanup.

use super::*;

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
                // Recorded for removal only once created here: an existing
                // entry of that name is not this run's.
                if let Err(e) = fs::create_dir(&dir) {
                    let _ = fs::remove_file(&lock_path);
                    return Err(io::Error::new(
                        e.kind(),
                        format!("staging {}: {e}", dir.display()),
                    ));
                }
                s.entries.push((dir.clone(), lock_path, lock));
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
