//! In-process protocol tests of the FileSync `DiffCopy` sender: the service
//! runs on a tonic server on a loopback port, and the test plays BuildKit's
//! part (fsutil's receiver) with the generated FileSync client.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use mybake_buildkit::filesync::stat::go_mode;
use mybake_buildkit::filesync::walk::compare_path;
use mybake_buildkit::filesync::{FileSyncService, LocalDir, CHUNK_SIZE};
use mybake_buildkit::proto::fsutil::types::packet::PacketType;
use mybake_buildkit::proto::fsutil::types::{Packet, Stat};
use mybake_buildkit::proto::moby::filesync::v1::file_sync_client::FileSyncClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const BIG_SIZE: usize = 50 * 1024 * 1024;

/// Starts a server with `service` on 127.0.0.1 and connects a client.
async fn connect(
    service: FileSyncService,
) -> Result<FileSyncClient<Channel>, Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok(FileSyncClient::new(channel))
}

/// fsutil's `Validator`: paths clean and relative, every parent sent
/// before its children, siblings strictly increasing.
#[derive(Default)]
struct Validator {
    /// (dir, last base name seen in it)
    parents: Vec<(String, String)>,
}

impl Validator {
    fn handle(&mut self, p: &str, is_dir: bool) -> Result<(), String> {
        if self.parents.is_empty() {
            self.parents.push((String::new(), String::new()));
        }
        if p.is_empty()
            || p.starts_with('/')
            || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(format!("unclean or absolute path {p:?}"));
        }
        let (dir, base) = match p.rsplit_once('/') {
            Some((d, b)) => (d.to_owned(), b.to_owned()),
            None => (String::new(), p.to_owned()),
        };
        // Find the parent record, popping finished directories.
        while let Some((d, _)) = self.parents.last() {
            if compare_path(d, &dir) != std::cmp::Ordering::Greater {
                break;
            }
            self.parents.pop();
        }
        let Some((last_dir, last)) = self.parents.last_mut() else {
            return Err(format!("no parent for {p:?}"));
        };
        if *last_dir != dir || last.as_str() >= base.as_str() {
            return Err(format!(
                "changes out of order: {p:?} after {last_dir:?}/{last:?}"
            ));
        }
        *last = base.clone();
        if is_dir {
            self.parents.push((p.to_owned(), String::new()));
        }
        Ok(())
    }
}

/// What the receiver got.
struct Transfer {
    stats: Vec<Stat>,
    files: HashMap<String, Vec<u8>>,
}

fn kind(p: &Packet) -> PacketType {
    PacketType::try_from(p.r#type).unwrap_or(PacketType::PacketErr)
}

/// Plays fsutil's receiver: reads every STAT (validating the order),
/// requests every regular file (all at once, in reverse order), collects
/// the data, then exchanges FIN.
async fn receive(
    client: &mut FileSyncClient<Channel>,
    metadata: MetadataMap,
) -> Result<Transfer, tonic::Status> {
    let (tx, rx) = mpsc::channel::<Packet>(1024);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    *request.metadata_mut() = metadata;
    let mut inbound = client.diff_copy(request).await?.into_inner();

    let mut validator = Validator::default();
    let mut stats = Vec::new();
    loop {
        let p = inbound
            .message()
            .await?
            .ok_or_else(|| tonic::Status::internal("stream ended before the last STAT"))?;
        match kind(&p) {
            PacketType::PacketStat => match p.stat {
                Some(stat) => {
                    validator
                        .handle(&stat.path, stat.mode & go_mode::DIR != 0)
                        .map_err(tonic::Status::internal)?;
                    stats.push(stat);
                }
                None => break,
            },
            PacketType::PacketErr => {
                return Err(tonic::Status::internal(format!(
                    "error from sender: {}",
                    String::from_utf8_lossy(&p.data)
                )))
            }
            other => {
                return Err(tonic::Status::internal(format!(
                    "unexpected {other:?} before the last STAT"
                )))
            }
        }
    }

    // Request every regular file that is not a hardlink, newest first.
    let wanted: Vec<u32> = stats
        .iter()
        .enumerate()
        .filter(|(_, s)| s.mode & go_mode::TYPE == 0 && s.linkname.is_empty())
        .map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX))
        .rev()
        .collect();
    for id in &wanted {
        tx.send(Packet {
            r#type: PacketType::PacketReq as i32,
            id: *id,
            ..Packet::default()
        })
        .await
        .map_err(|_| tonic::Status::internal("request stream closed"))?;
    }

    let mut data: BTreeMap<u32, Vec<u8>> = wanted.iter().map(|id| (*id, Vec::new())).collect();
    let mut pending = wanted.len();
    while pending > 0 {
        let p = inbound
            .message()
            .await?
            .ok_or_else(|| tonic::Status::internal("stream ended before all data"))?;
        if kind(&p) != PacketType::PacketData {
            return Err(tonic::Status::internal(format!(
                "unexpected {:?}",
                kind(&p)
            )));
        }
        if p.data.len() > CHUNK_SIZE {
            return Err(tonic::Status::internal("chunk too large"));
        }
        let buf = data
            .get_mut(&p.id)
            .ok_or_else(|| tonic::Status::internal(format!("data for unrequested id {}", p.id)))?;
        if p.data.is_empty() {
            pending -= 1;
        } else {
            buf.extend_from_slice(&p.data);
        }
    }

    tx.send(Packet {
        r#type: PacketType::PacketFin as i32,
        ..Packet::default()
    })
    .await
    .map_err(|_| tonic::Status::internal("request stream closed"))?;
    let fin = inbound.message().await?;
    if fin.as_ref().map(kind) != Some(PacketType::PacketFin) {
        return Err(tonic::Status::internal("no FIN from the sender"));
    }
    if inbound.message().await?.is_some() {
        return Err(tonic::Status::internal("packets after FIN"));
    }
    drop(tx);

    let files = data
        .into_iter()
        .map(|(id, bytes)| (stats[id as usize].path.clone(), bytes))
        .collect();
    Ok(Transfer { stats, files })
}

fn metadata(
    pairs: &[(&'static str, &str)],
) -> Result<MetadataMap, Box<dyn std::error::Error + Send + Sync>> {
    let mut md = MetadataMap::new();
    for (k, v) in pairs {
        md.append(*k, MetadataValue::try_from(*v)?);
    }
    Ok(md)
}

/// Deterministic, incompressible-looking content.
fn big_content() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..BIG_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn write(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::File::create(path)?.write_all(content)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_copy_transfers_tree_in_order() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    write(&root.join("Dockerfile"), b"FROM scratch\n")?;
    write(&root.join("app/main.rs"), b"fn main() {}\n")?;
    write(&root.join("app/sub/deep/file.txt"), b"deep")?;
    write(&root.join("app-b"), b"sorts after app/ on the wire")?;
    write(&root.join("bin/run.sh"), b"#!/bin/sh\necho hi\n")?;
    std::fs::set_permissions(
        root.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    std::fs::create_dir(root.join("empty"))?;
    symlink("app/main.rs", root.join("link"))?;
    symlink("app", root.join("dirlink"))?;
    std::fs::hard_link(root.join("Dockerfile"), root.join("hard"))?;
    write(&root.join("node_modules/pkg/index.js"), b"excluded")?;
    write(
        &root.join("node_modules/keep/keep.js"),
        b"kept by a negation",
    )?;
    write(&root.join("logs/a.log"), b"excluded")?;
    write(&root.join("logs/b.txt"), b"kept")?;
    let big = big_content();
    write(&root.join("big.bin"), &big)?;

    let mut client = connect(FileSyncService::new([("context", LocalDir::open(root)?)])).await?;
    let md = metadata(&[
        ("dir-name", "context"),
        ("exclude-patterns", "node_modules"),
        ("exclude-patterns", "!node_modules/keep"),
        ("exclude-patterns", "**/*.log"),
        ("exclude-patterns", "app/sub/deep"),
    ])?;
    let transfer = receive(&mut client, md).await?;

    let paths: Vec<&str> = transfer.stats.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Dockerfile",
            "app",
            "app/main.rs",
            "app/sub",
            "app-b",
            "big.bin",
            "bin",
            "bin/run.sh",
            "dirlink",
            "empty",
            "hard",
            "link",
            "logs",
            "logs/b.txt",
            "node_modules",
            "node_modules/keep",
            "node_modules/keep/keep.js",
        ]
    );
    let stat = |p: &str| {
        transfer
            .stats
            .iter()
            .find(|s| s.path == p)
            .ok_or(format!("no stat for {p}"))
    };

    // Mode bits in Go's os.FileMode encoding.
    let app_md = std::fs::symlink_metadata(root.join("app"))?;
    assert_eq!(stat("app")?.mode, go_mode::DIR | (app_md.mode() & 0o777));
    assert_eq!(stat("empty")?.mode & go_mode::DIR, go_mode::DIR);
    assert_eq!(stat("bin/run.sh")?.mode, 0o755);
    let link = stat("link")?;
    assert_eq!(link.mode, go_mode::SYMLINK | 0o777);
    assert_eq!(link.linkname, "app/main.rs");
    assert_eq!(link.size, "app/main.rs".len() as i64);
    let dirlink = stat("dirlink")?;
    assert_eq!(dirlink.mode & go_mode::SYMLINK, go_mode::SYMLINK);
    assert_eq!(dirlink.linkname, "app");
    // A hardlink points at the first path of its inode.
    assert_eq!(stat("hard")?.linkname, "Dockerfile");
    assert!(stat("Dockerfile")?.linkname.is_empty());

    // Owner, size and mtime as lstat reports them.
    let df_md = std::fs::symlink_metadata(root.join("Dockerfile"))?;
    let df = stat("Dockerfile")?;
    assert_eq!((df.uid, df.gid), (df_md.uid(), df_md.gid()));
    assert_eq!(df.size, 13);
    assert_eq!(
        df.mod_time,
        df_md.mtime() * 1_000_000_000 + df_md.mtime_nsec()
    );
    assert_eq!(stat("big.bin")?.size, BIG_SIZE as i64);

    // Contents of every regular file.
    let mut files = transfer.files;
    assert_eq!(
        files.remove("Dockerfile").as_deref(),
        Some(&b"FROM scratch\n"[..])
    );
    assert_eq!(
        files.remove("app/main.rs").as_deref(),
        Some(&b"fn main() {}\n"[..])
    );
    assert_eq!(
        files.remove("app-b").as_deref(),
        Some(&b"sorts after app/ on the wire"[..])
    );
    assert_eq!(
        files.remove("bin/run.sh").as_deref(),
        Some(&b"#!/bin/sh\necho hi\n"[..])
    );
    assert_eq!(files.remove("logs/b.txt").as_deref(), Some(&b"kept"[..]));
    assert_eq!(
        files.remove("node_modules/keep/keep.js").as_deref(),
        Some(&b"kept by a negation"[..])
    );
    let got_big = files.remove("big.bin").ok_or("big.bin not received")?;
    assert!(got_big == big, "big.bin differs");
    assert!(files.is_empty(), "unexpected files: {:?}", files.keys());
    Ok(())
}

#[tokio::test]
async fn diff_copy_includes_follow_paths_and_encoded_metadata() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    write(&root.join("build/Dockerfile.real"), b"FROM scratch\n")?;
    symlink("build/Dockerfile.real", root.join("Dockerfile"))?;
    write(&root.join(".dockerignore"), b"*.tmp\n")?;
    write(&root.join("dïr/ẞ.txt"), b"unicode")?;
    write(&root.join("other.txt"), b"not included")?;

    let mut client = connect(FileSyncService::new([(
        "dockerfile",
        LocalDir::open(root)?,
    )]))
    .await?;
    // What the dockerfile frontend sends to fetch the Dockerfile; the last
    // include pattern needs the query-escaped form.
    let md = metadata(&[
        ("dir-name", "dockerfile"),
        ("include-patterns", "Dockerfile"),
        ("include-patterns", ".dockerignore"),
        ("include-patterns", "d%C3%AFr%2F%E1%BA%9E.txt"),
        ("include-patterns-encoded", "1"),
        ("followpaths", "Dockerfile"),
        ("followpaths", ".dockerignore"),
    ])?;
    let transfer = receive(&mut client, md).await?;
    let paths: Vec<&str> = transfer.stats.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".dockerignore",
            "Dockerfile",
            "build",
            "build/Dockerfile.real",
            "dïr",
            "dïr/ẞ.txt"
        ]
    );
    assert_eq!(
        transfer
            .files
            .get("build/Dockerfile.real")
            .map(Vec::as_slice),
        Some(&b"FROM scratch\n"[..])
    );
    assert_eq!(
        transfer.files.get("dïr/ẞ.txt").map(Vec::as_slice),
        Some(&b"unicode"[..])
    );
    Ok(())
}

#[tokio::test]
async fn diff_copy_errors() -> TestResult {
    let tmp = tempfile::tempdir()?;
    write(&tmp.path().join("f"), b"x")?;
    let mut client = connect(FileSyncService::new([(
        "context",
        LocalDir::open(tmp.path())?,
    )]))
    .await?;

    // Unknown directory name.
    let err = receive(&mut client, metadata(&[("dir-name", "nope")])?)
        .await
        .err()
        .ok_or("expected an error")?;
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("no access allowed to dir \"nope\""));

    // Invalid pattern.
    let err = receive(
        &mut client,
        metadata(&[("dir-name", "context"), ("exclude-patterns", "[")])?,
    )
    .await
    .err()
    .ok_or("expected an error")?;
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // The receiver reports an error: the sender ends the call with it.
    let (tx, rx) = mpsc::channel::<Packet>(4);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    *request.metadata_mut() = metadata(&[("dir-name", "context")])?;
    let mut inbound = client.diff_copy(request).await?.into_inner();
    tx.send(Packet {
        r#type: PacketType::PacketErr as i32,
        data: b"disk full".to_vec(),
        ..Packet::default()
    })
    .await?;
    let status = loop {
        match inbound.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => return Err("stream ended without error".into()),
            Err(status) => break status,
        }
    };
    assert!(
        status.message().contains("error from receiver: disk full"),
        "{status:?}"
    );

    // TarStream is not served.
    let (_tx, rx) = mpsc::channel::<Packet>(1);
    let err = client
        .tar_stream(ReceiverStream::new(rx))
        .await
        .err()
        .ok_or("expected an error")?;
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    Ok(())
}
