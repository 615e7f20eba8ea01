//! The session's FileSync service: BuildKit pulls local directories (the
//! build context, the directory of the Dockerfile, named contexts) from the
//! client with `/moby.filesync.v1.FileSync/DiffCopy`, fsutil's file-transfer
//! protocol in which the client is the *sender*.
//!
//! A request names the directory in the gRPC metadata (`dir-name`) and may
//! restrict the transfer with `include-patterns`, `exclude-patterns` and
//! `followpaths` (each value percent-decoded when `<key>-encoded` is true).
//! The dockerfile frontend first fetches the Dockerfile and `.dockerignore`
//! with include patterns, then sends the `.dockerignore` lines as exclude
//! patterns for the context; this service just applies what it is sent.
//!
//! ```no_run
//! use mybake_buildkit::filesync::{FileSyncService, LocalDir};
//! # fn main() -> std::io::Result<()> {
//! let service = FileSyncService::new([
//!     ("context", LocalDir::open("./app")?),
//!     ("dockerfile", LocalDir::open("./app")?),
//! ]);
//! let server = service.into_server(); // a tower service for the session's gRPC server
//! # let _ = server;
//! # Ok(())
//! # }
//! ```
//!
//! Behaviour follows tonistiigi/fsutil (`send.go`, `filter.go`, `fs.go`,
//! `stat.go`, `followlinks.go`) and moby/patternmatcher; see the
//! submodules. Known deviations: a file that vanishes during the walk is
//! skipped alone (fsutil skips the rest of its directory), an unreadable
//! root is an error (fsutil sends an empty tree), and names that are not
//! UTF-8 are an error when they would be sent (protobuf strings cannot
//! carry them).

mod followlinks;
mod gopath;
pub mod patternmatcher;
mod send;
pub mod stat;
pub mod walk;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard_buildkit_proto::fsutil::types::Packet;
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::{FileSync, FileSyncServer};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

pub use patternmatcher::{parse_ignore_file, PatternError, PatternMatcher};
pub use send::{DiffCopyStream, CHUNK_SIZE};
pub use walk::{FilterOptions, WalkEntry, WalkError, Walker};

/// gRPC service name of FileSync.
pub const SERVICE_NAME: &str = "moby.filesync.v1.FileSync";
/// Full method name of `DiffCopy`.
pub const DIFF_COPY_METHOD: &str = "/moby.filesync.v1.FileSync/DiffCopy";
/// Full method name of `TarStream` (announced like the Go client does, but
/// answered `Unimplemented`; BuildKit only uses `DiffCopy`).
pub const TAR_STREAM_METHOD: &str = "/moby.filesync.v1.FileSync/TarStream";
/// The methods to announce in the session headers
/// (`x-docker-expose-session-grpc-method`).
pub const METHODS: &[&str] = &[DIFF_COPY_METHOD, TAR_STREAM_METHOD];

/// Metadata keys of a `DiffCopy` request (buildkit `session/filesync`).
pub mod keys {
    /// The name of the requested directory (`context`, `dockerfile`, …).
    pub const DIR_NAME: &str = "dir-name";
    /// Include patterns, one value each.
    pub const INCLUDE_PATTERNS: &str = "include-patterns";
    /// Exclude patterns, one value each.
    pub const EXCLUDE_PATTERNS: &str = "exclude-patterns";
    /// Paths whose symlinks are resolved into include patterns.
    pub const FOLLOW_PATHS: &str = "followpaths";
    /// Suffix of the key that marks a key's values as query-escaped.
    pub const ENCODED_SUFFIX: &str = "-encoded";
}

/// A local directory the session exposes under a name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalDir {
    /// The directory on the host (symlinks in it are resolved per request).
    pub path: PathBuf,
}

impl LocalDir {
    /// Exposes `path` as is; it is checked when BuildKit requests it.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalDir { path: path.into() }
    }

    /// Exposes `path` after checking that it is a directory, resolving it
    /// to an absolute path without symlinks (like buildx's `fsutil.NewFS`
    /// at session setup), so that a bad path fails before the build starts.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let resolved = std::fs::canonicalize(path)
            .map_err(|e| io::Error::new(e.kind(), format!("resolve {}: {e}", path.display())))?;
        if !std::fs::metadata(&resolved)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            ));
        }
        Ok(LocalDir { path: resolved })
    }
}

/// The FileSync service: serves `DiffCopy` for a fixed set of named
/// directories. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FileSyncService {
    dirs: Arc<HashMap<String, LocalDir>>,
}

impl FileSyncService {
    /// A service exposing `dirs` (name → directory), e.g. `"context"` and
    /// `"dockerfile"`.
    pub fn new<I, K>(dirs: I) -> Self
    where
        I: IntoIterator<Item = (K, LocalDir)>,
        K: Into<String>,
    {
        FileSyncService {
            dirs: Arc::new(dirs.into_iter().map(|(k, v)| (k.into(), v)).collect()),
        }
    }

    /// The directory exposed under `name`.
    pub fn dir(&self, name: &str) -> Option<&LocalDir> {
        self.dirs.get(name)
    }

    /// The tonic server wrapping this service, ready to be routed.
    pub fn into_server(self) -> FileSyncServer<Self> {
        FileSyncServer::new(self)
    }

    /// Prepares the transfer for a request: the walker of the named
    /// directory with the requested filters.
    async fn prepare(&self, metadata: &MetadataMap) -> Result<Walker, Status> {
        let opts = RequestOptions::from_metadata(metadata);
        let dir = self.dirs.get(&opts.dir_name).ok_or_else(|| {
            Status::not_found(format!("no access allowed to dir {:?}", opts.dir_name))
        })?;
        let root = dir.path.clone();
        let filter = opts.filter;
        tokio::task::spawn_blocking(move || Walker::new(&root, &filter))
            .await
            .map_err(|e| Status::internal(format!("preparing transfer failed: {e}")))?
            .map_err(|e| match e {
                WalkError::Pattern { .. } => Status::invalid_argument(e.to_string()),
                _ => Status::unknown(e.to_string()),
            })
    }
}

#[tonic::async_trait]
impl FileSync for FileSyncService {
    type DiffCopyStream = DiffCopyStream;
    type TarStreamStream = DiffCopyStream;

    async fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let walker = self.prepare(request.metadata()).await?;
        Ok(Response::new(send::start(walker, request.into_inner())))
    }

    async fn tar_stream(
        &self,
        _request: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::TarStreamStream>, Status> {
        Err(Status::unimplemented(
            "TarStream is not supported, use DiffCopy",
        ))
    }
}

/// The options of one `DiffCopy` request, decoded from its metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// `dir-name` (empty when missing).
    pub dir_name: String,
    /// Patterns and follow paths.
    pub filter: FilterOptions,
}

impl RequestOptions {
    /// Decodes the request metadata like buildkit's `decodeOpts`: when
    /// `<key>-encoded` parses as a true Go bool, every value of `<key>` is
    /// query-unescaped (`%XX`, `+` as space; an invalid escape yields "").
    pub fn from_metadata(md: &MetadataMap) -> Self {
        RequestOptions {
            dir_name: values(md, keys::DIR_NAME)
                .into_iter()
                .next()
                .unwrap_or_default(),
            filter: FilterOptions {
                include_patterns: values(md, keys::INCLUDE_PATTERNS),
                exclude_patterns: values(md, keys::EXCLUDE_PATTERNS),
                follow_paths: values(md, keys::FOLLOW_PATHS),
            },
        }
    }
}

/// All values of `key`, decoded.
fn values(md: &MetadataMap, key: &str) -> Vec<String> {
    let encoded_key = format!("{key}{}", keys::ENCODED_SUFFIX);
    let encoded = md
        .get_all(encoded_key.as_str())
        .iter()
        .next()
        .is_some_and(|v| parse_go_bool(v.as_bytes()));
    md.get_all(key)
        .iter()
        .map(|v| {
            if encoded {
                query_unescape(v.as_bytes()).unwrap_or_default()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            }
        })
        .collect()
}

/// Go's `strconv.ParseBool`, true values only.
fn parse_go_bool(v: &[u8]) -> bool {
    matches!(v, b"1" | b"t" | b"T" | b"TRUE" | b"true" | b"True")
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte; a malformed
/// escape is an error.
fn query_unescape(s: &[u8]) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = hex(*s.get(i + 1)?)?;
                let lo = hex(*s.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn unescape() {
        assert_eq!(query_unescape(b"a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(query_unescape(b"%C3%A9t%C3%A9").as_deref(), Some("été"));
        assert_eq!(query_unescape(b"100%").as_deref(), None);
        assert_eq!(query_unescape(b"%zz").as_deref(), None);
        assert_eq!(query_unescape(b"plain").as_deref(), Some("plain"));
    }

    #[test]
    fn options_from_metadata() {
        let mut md = MetadataMap::new();
        md.insert("dir-name", MetadataValue::from_static("context"));
        md.append(
            "exclude-patterns",
            MetadataValue::from_static("node_modules"),
        );
        md.append(
            "exclude-patterns",
            MetadataValue::from_static("!node_modules/keep"),
        );
        md.append(
            "include-patterns",
            MetadataValue::from_static("%C3%A9t%C3%A9"),
        );
        md.append("include-patterns", MetadataValue::from_static("a+b"));
        md.insert("include-patterns-encoded", MetadataValue::from_static("1"));
        md.append("followpaths", MetadataValue::from_static("Dockerfile"));
        let opts = RequestOptions::from_metadata(&md);
        assert_eq!(opts.dir_name, "context");
        assert_eq!(
            opts.filter.exclude_patterns,
            ["node_modules", "!node_modules/keep"]
        );
        assert_eq!(opts.filter.include_patterns, ["été", "a b"]);
        assert_eq!(opts.filter.follow_paths, ["Dockerfile"]);

        let empty = RequestOptions::from_metadata(&MetadataMap::new());
        assert_eq!(empty, RequestOptions::default());
    }

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(parse_go_bool(t.as_bytes()));
        }
        for f in ["0", "false", "yes", ""] {
            assert!(!parse_go_bool(f.as_bytes()));
        }
    }

    #[test]
    fn methods() {
        assert_eq!(METHODS[0], format!("/{SERVICE_NAME}/DiffCopy"));
        assert_eq!(
            bollard_buildkit_proto::moby::filesync::v1::file_sync_server::SERVICE_NAME,
            SERVICE_NAME
        );
    }

    #[tokio::test]
    async fn unknown_dir_is_not_found() {
        let svc = FileSyncService::new([("context", LocalDir::new("/nonexistent"))]);
        let mut md = MetadataMap::new();
        md.insert("dir-name", MetadataValue::from_static("other"));
        let err = svc.prepare(&md).await.err().map(|s| s.code());
        assert_eq!(err, Some(tonic::Code::NotFound));
        md.insert("dir-name", MetadataValue::from_static("context"));
        let err = svc.prepare(&md).await.err().map(|s| s.code());
        assert_eq!(err, Some(tonic::Code::Unknown));
    }
}
