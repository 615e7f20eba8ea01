//! Serializing the tag writes of concurrent runs on one machine.
//!
//! Two runs writing the same tags at once can leave `dev` pointing at one
//! run's index and `latest` at the other's. Before writing tags, a run
//! takes an exclusive `flock(2)` lock per repository it writes to, in
//! sorted order (so two runs with overlapping repositories cannot
//! deadlock), and keeps them until its tags are written and read back.
//!
//! * Lock files live in `$XDG_RUNTIME_DIR/mybake/locks` when
//!   `XDG_RUNTIME_DIR` is set, else `/tmp/mybake-locks-<uid>`, created with
//!   mode 0700; a directory that is a symlink or belongs to another user is
//!   refused. `MYBAKE_LOCK_DIR` names another directory.
//! * A lock file is named by the SHA-256 of `registry/repository` and is
//!   never deleted: deleting a lock file races with a run that has it open
//!   and is about to lock it.
//! * The kernel releases a `flock` when the process ends, however it ends.
//! * Waiting polls (`LOCK_NB`) so that it stops at once on cancellation.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mybake_buildkit::CancellationToken;

use super::index::sha256_digest;

/// How often a waiting run tries the lock again.
const POLL: Duration = Duration::from_millis(100);

/// Why the locks were not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock directory or a lock file could not be used.
    #[error("cannot lock {repository} against concurrent mybake runs: {message}")]
    Io {
        /// The repository.
        repository: String,
        /// What failed.
        message: String,
    },
    /// Cancelled while waiting.
    #[error("interrupted while waiting for another mybake run publishing to {repository}")]
    Interrupted {
        /// The repository waited for.
        repository: String,
    },
}

/// Held locks; dropping releases them (closing the files).
#[derive(Debug)]
pub struct RepositoryLocks {
    _files: Vec<File>,
}

/// The directory for lock files (see the module documentation).
pub fn lock_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MYBAKE_LOCK_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("mybake").join("locks"),
        // SAFETY: geteuid has no preconditions and cannot fail.
        None => PathBuf::from(format!("/tmp/mybake-locks-{}", unsafe { libc::geteuid() })),
    }
}

/// The lock file of `repository` (`registry/repository`) in `dir`.
pub fn lock_path(dir: &Path, repository: &str) -> PathBuf {
    let digest = sha256_digest(repository.as_bytes());
    let hex = digest.trim_start_matches("sha256:");
    dir.join(format!("{}.lock", &hex[..32]))
}

/// Creates `dir` (mode 0700) if missing; refuses a symlink, a non-directory
/// or a directory owned by another user.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let md = std::fs::symlink_metadata(dir)?;
    if !md.file_type().is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if md.uid() != me {
        return Err(io::Error::other(format!(
            "{} belongs to uid {}, not to this user (uid {me})",
            dir.display(),
            md.uid()
        )));
    }
    Ok(())
}

/// `flock(LOCK_EX | LOCK_NB)` (std's `File::try_lock`, as the file-output
/// staging locks): `Ok(false)` when another holder has it.
fn try_lock(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Takes the lock of every repository (`registry/repository`; duplicates
/// allowed) in sorted order, waiting as long as another run holds one;
/// `waiting` is called once for each repository that had to be waited for.
pub async fn lock_repositories(
    dir: &Path,
    repositories: &[String],
    cancel: &CancellationToken,
    mut waiting: impl FnMut(&str),
) -> Result<RepositoryLocks, LockError> {
    let mut repos: Vec<&String> = repositories.iter().collect();
    repos.sort();
    repos.dedup();
    let mut files = Vec::with_capacity(repos.len());
    if let Some(first) = repos.first() {
        ensure_dir(dir).map_err(|e| LockError::Io {
            repository: (*first).clone(),
            message: e.to_string(),
        })?;
    }
    for repo in repos {
        let io_err = |e: io::Error| LockError::Io {
            repository: repo.clone(),
            message: e.to_string(),
        };
        let path = lock_path(dir, repo);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| LockError::Io {
                repository: repo.clone(),
                message: format!("{}: {e}", path.display()),
            })?;
        let mut announced = false;
        while !try_lock(&file).map_err(io_err)? {
            if !announced {
                waiting(repo);
                announced = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = cancel.cancelled() => {
                    return Err(LockError::Interrupted {
                        repository: repo.clone(),
                    })
                }
            }
        }
        files.push(file);
    }
    Ok(RepositoryLocks { _files: files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_until_release_and_stops_on_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let repos = vec!["r/b".to_owned(), "r/a".to_owned(), "r/a".to_owned()];
        let cancel = CancellationToken::new();
        let held = lock_repositories(&locks, &repos, &cancel, |_| panic!("nobody holds it"))
            .await
            .unwrap();
        // flock locks belong to the open file description: a second open
        // in this process conflicts like another process would.
        let mut waited = Vec::new();
        let other = CancellationToken::new();
        let stop = other.clone();
        let t = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.cancel();
        });
        let err = lock_repositories(&locks, &["r/a".to_owned()], &other, |r| {
            waited.push(r.to_owned())
        })
        .await
        .unwrap_err();
        t.await.unwrap();
        assert!(matches!(err, LockError::Interrupted { .. }), "{err}");
        assert_eq!(waited, ["r/a"]);
        drop(held);
        let again = lock_repositories(&locks, &repos, &cancel, |_| panic!("released"))
            .await
            .unwrap();
        drop(again);
        // Lock files stay; their names do not show the repository.
        let mut names: Vec<String> = std::fs::read_dir(&locks)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2);
        assert!(names.iter().all(|n| n.len() == 37 && n.ends_with(".lock")));
        let mode = std::fs::metadata(&locks).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
