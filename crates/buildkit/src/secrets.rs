//! The session's Secrets service (`moby.buildkit.secrets.v1.Secrets`):
//! answers `GetSecret{id}` for `RUN --mount=type=secret,id=…` from the
//! sources the user configured, like buildkit's `secretsprovider`.
//!
//! * `env=NAME`: the value of the environment variable at request time
//!   (empty when unset, as in BuildKit).
//! * `src=PATH`: the contents of the file at request time (`~` expansion
//!   is the caller's job).
//! * Neither: the environment variable named like the id if it is set,
//!   else the file named like the id (buildx's default).
//!
//! An unknown id is answered `NotFound`, which BuildKit reports as
//! "secret ID not found". Secret values are never logged; the `Debug`
//! output of these types shows sources, never values.
//!
//! ```no_run
//! use mybake_buildkit::secrets::{SecretSource, SecretsService};
//! # fn main() -> Result<(), mybake_buildkit::secrets::SecretsError> {
//! let service = SecretsService::new([
//!     ("npm".to_owned(), SecretSource::Env("NPM_TOKEN".into())),
//!     ("aws".to_owned(), SecretSource::File("/home/me/.aws/credentials".into())),
//! ])?;
//! let server = service.into_server();
//! # let _ = server;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use tonic::{Request, Response, Status};

/// gRPC service name of Secrets.
pub const SERVICE_NAME: &str = "moby.buildkit.secrets.v1.Secrets";
/// Full method name of `GetSecret`.
pub const GET_SECRET_METHOD: &str = "/moby.buildkit.secrets.v1.Secrets/GetSecret";
/// The methods to announce in the session headers.
pub const METHODS: &[&str] = &[GET_SECRET_METHOD];

/// The largest secret BuildKit accepts (`secretsprovider.MaxSecretSize`).
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// Where the value of a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The environment variable with this name, read at request time.
    Env(String),
    /// The file at this path, read at request time.
    File(PathBuf),
}

impl fmt::Debug for SecretSource {
    // Names and paths are not secret, but keep the format explicit so a
    // value can never slip in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "env={name}"),
            SecretSource::File(path) => write!(f, "src={}", path.display()),
        }
    }
}

impl SecretSource {
    /// buildx's default for a secret given without `env=` or `src=`: the
    /// environment variable named `id` if it is set, else the file `id`.
    pub fn default_for(id: &str) -> Self {
        if std::env::var_os(id).is_some() {
            SecretSource::Env(id.to_owned())
        } else {
            SecretSource::File(PathBuf::from(id))
        }
    }
}

/// Why a file cannot be a secret source.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    /// Nothing at the path.
    #[error("{} does not exist", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The path exists (or may) but cannot be examined.
    #[error("{} cannot be examined: {source}", path.display())]
    Stat {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A directory, device, FIFO or socket: its "contents" are not a value.
    #[error("{} is a {kind}, not a regular file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead (`directory`, `character device`, ...).
        kind: &'static str,
    },
    /// Larger than BuildKit accepts.
    #[error("{} is {size} bytes, more than the {MAX_SECRET_SIZE} bytes BuildKit accepts for a secret", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

/// Checks that `path` (symlinks followed) is a regular file of at most
/// [`MAX_SECRET_SIZE`] bytes; returns its size.
pub fn check_file(path: &Path) -> Result<u64, FileProblem> {
    let md = match std::fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FileProblem::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(FileProblem::Stat {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let ft = md.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_char_device() {
            "character device"
        } else if ft.is_block_device() {
            "block device"
        } else if ft.is_fifo() {
            "named pipe (FIFO)"
        } else if ft.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(FileProblem::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    if md.len() > MAX_SECRET_SIZE {
        return Err(FileProblem::TooLarge {
            path: path.to_path_buf(),
            size: md.len(),
        });
    }
    Ok(md.len())
}

/// A configuration error of the secret sources.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A secret without id.
    #[error("secret missing ID")]
    MissingId,
    /// A file source that cannot be a secret ([`check_file`]).
    #[error("secret {id}: {problem}")]
    File {
        /// The secret id.
        id: String,
        /// What is wrong with the file.
        #[source]
        problem: FileProblem,
    },
}

/// The Secrets service. Cheap to clone.
#[derive(Clone, Default)]
pub struct SecretsService {
    sources: Arc<HashMap<String, SecretSource>>,
}

impl fmt::Debug for SecretsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.sources.keys().collect();
        ids.sort();
        f.debug_struct("SecretsService").field("ids", &ids).finish()
    }
}

impl SecretsService {
    /// A service for `sources` (id → source). Like buildkit's
    /// `secretsprovider.NewStore`, checks up front that every file source
    /// is a regular file of at most [`MAX_SECRET_SIZE`] bytes
    /// ([`check_file`]).
    pub fn new<I>(sources: I) -> Result<Self, SecretsError>
    where
        I: IntoIterator<Item = (String, SecretSource)>,
    {
        let mut map = HashMap::new();
        for (id, source) in sources {
            if id.is_empty() {
                return Err(SecretsError::MissingId);
            }
            if let SecretSource::File(path) = &source {
                if let Err(problem) = check_file(path) {
                    return Err(SecretsError::File { id, problem });
                }
            }
            map.insert(id, source);
        }
        Ok(SecretsService {
            sources: Arc::new(map),
        })
    }

    /// The configured secret ids, sorted.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.sources.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// The tonic server wrapping this service, ready to be routed.
    pub fn into_server(self) -> SecretsServer<Self> {
        SecretsServer::new(self)
    }

    /// Reads the current value of secret `id`.
    pub async fn value(&self, id: &str) -> Result<Vec<u8>, Status> {
        let source = self
            .sources
            .get(id)
            .ok_or_else(|| Status::not_found(format!("secret {id} not found")))?;
        let data = match source {
            SecretSource::Env(name) => std::env::var_os(name)
                .map(|v| {
                    use std::os::unix::ffi::OsStringExt;
                    v.into_vec()
                })
                .unwrap_or_default(),
            SecretSource::File(path) => {
                // Checked again: the file may have been replaced by a FIFO
                // or device since, and reading one would not end.
                check_file(path)
                    .map_err(|e| Status::unknown(format!("failed to read secret {id}: {e}")))?;
                tokio::fs::read(path).await.map_err(|e| {
                    Status::unknown(format!(
                        "failed to read secret {id} from {}: {e}",
                        path.display()
                    ))
                })?
            }
        };
        if data.len() as u64 > MAX_SECRET_SIZE {
            return Err(Status::unknown(format!(
                "invalid secret size {}",
                data.len()
            )));
        }
        Ok(data)
    }
}

#[tonic::async_trait]
impl Secrets for SecretsService {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = request.into_inner().id;
        let data = self.value(&id).await?;
        Ok(Response::new(GetSecretResponse { data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn env_and_file_sources() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("token");
        std::fs::write(&file, b"s3cr3t-file")?;
        std::env::set_var("MYBAKE_TEST_SECRET_ENV", "s3cr3t-env");
        let svc = SecretsService::new([
            (
                "e".to_owned(),
                SecretSource::Env("MYBAKE_TEST_SECRET_ENV".into()),
            ),
            ("f".to_owned(), SecretSource::File(file.clone())),
            (
                "unset".to_owned(),
                SecretSource::Env("MYBAKE_TEST_SECRET_UNSET".into()),
            ),
        ])?;
        let get = |id: &str| {
            let svc = svc.clone();
            let id = id.to_owned();
            async move {
                svc.get_secret(Request::new(GetSecretRequest {
                    id,
                    annotations: HashMap::new(),
                }))
                .await
                .map(|r| r.into_inner().data)
            }
        };
        assert_eq!(get("e").await?, b"s3cr3t-env");
        assert_eq!(get("f").await?, b"s3cr3t-file");
        assert_eq!(get("unset").await?, b"");
        // Read at request time.
        std::fs::write(&file, b"rotated")?;
        assert_eq!(get("f").await?, b"rotated");
        let missing = get("nope").await.err().map(|s| s.code());
        assert_eq!(missing, Some(tonic::Code::NotFound));
        std::fs::remove_file(&file)?;
        let gone = get("f").await.err().map(|s| s.code());
        assert_eq!(gone, Some(tonic::Code::Unknown));
        Ok(())
    }

    #[test]
    fn validation() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(matches!(
            SecretsService::new([(String::new(), SecretSource::Env("X".into()))]),
            Err(SecretsError::MissingId)
        ));
        assert!(matches!(
            SecretsService::new([(
                "a".to_owned(),
                SecretSource::File(dir.path().join("missing"))
            )]),
            Err(SecretsError::File {
                problem: FileProblem::Missing { .. },
                ..
            })
        ));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; 500 * 1024 + 1])?;
        let err = SecretsService::new([("big".to_owned(), SecretSource::File(big))]).unwrap_err();
        assert!(
            matches!(
                err,
                SecretsError::File {
                    problem: FileProblem::TooLarge { size: 512001, .. },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("512001 bytes, more than the 512000"),
            "{err}"
        );
        // Exists, but not a regular file: said so, not "does not exist".
        for (path, kind) in [
            (Path::new("/dev/zero"), "character device"),
            (dir.path(), "directory"),
        ] {
            let e = check_file(path).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("{} is a {kind}, not a regular file", path.display())
            );
        }
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = SecretsService::new([("p".to_owned(), SecretSource::File(fifo))]).unwrap_err();
        assert!(
            e.to_string()
                .contains("is a named pipe (FIFO), not a regular file"),
            "{e}"
        );
        let ok = dir.path().join("ok");
        std::fs::write(&ok, b"v")?;
        assert_eq!(check_file(&ok).ok(), Some(1));
        Ok(())
    }

    #[test]
    fn default_source() {
        std::env::set_var("MYBAKE_TEST_SECRET_DEFAULT", "x");
        assert_eq!(
            SecretSource::default_for("MYBAKE_TEST_SECRET_DEFAULT"),
            SecretSource::Env("MYBAKE_TEST_SECRET_DEFAULT".into())
        );
        assert_eq!(
            SecretSource::default_for("MYBAKE_TEST_SECRET_NOPE"),
            SecretSource::File("MYBAKE_TEST_SECRET_NOPE".into())
        );
    }

    #[test]
    fn debug_redacts() -> Result<(), SecretsError> {
        std::env::set_var("MYBAKE_TEST_SECRET_DEBUG", "do-not-print");
        let svc = SecretsService::new([(
            "tok".to_owned(),
            SecretSource::Env("MYBAKE_TEST_SECRET_DEBUG".into()),
        )])?;
        let dbg = format!("{svc:?} {:?}", SecretSource::Env("X".into()));
        assert!(!dbg.contains("do-not-print"));
        assert!(dbg.contains("tok"));
        assert_eq!(svc.ids(), ["tok"]);
        Ok(())
    }
}
