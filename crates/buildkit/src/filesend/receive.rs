//! The receiving side of fsutil's DiffCopy protocol (fsutil `receive.go`),
//! as BuildKit's `local` exporter uses it: the daemon is the *sender*.
//!
//! * The sender streams a `PACKET_STAT` per entry in strict path order
//!   (fsutil's `ComparePath`), parents before children, then an empty
//!   `PACKET_STAT`.
//! * The receiver asks for each regular file's contents with
//!   `PACKET_REQ{id}` (`id` = index of the entry's STAT in the stream); the
//!   sender answers `PACKET_DATA{id}` chunks and an empty `PACKET_DATA{id}`.
//! * When every requested file has arrived the receiver sends `PACKET_FIN`;
//!   the sender answers `PACKET_FIN` and the transfer is over.
//!   `PACKET_ERR` from either side aborts.
//!
//! The receiver writes into a directory it is given and never outside it:
//! paths must be relative and clean (no `..`, `.`, empty or absolute
//! components), every entry's parent must be a directory received earlier
//! in the same transfer (so a received symlink is never written through),
//! and a hard link must name a regular file received earlier. Symlinks are
//! created as they are (their target is not followed). Ownership is the
//! receiving user's (like buildkit's `syncTargetDiffCopy`); permissions,
//! set-id/sticky bits and modification times are applied; extended
//! attributes are not.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::fsutil::types::{Packet, Stat};

use crate::filesync::stat::go_mode;
use crate::filesync::walk::compare_path;

/// Why a transfer into a directory failed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The sender broke the protocol or sent a path that is not allowed.
    #[error("{0}")]
    Protocol(String),
    /// The sender aborted with `PACKET_ERR`.
    #[error("error from sender: {0}")]
    Sender(String),
    /// Writing to the destination failed.
    #[error("{path}: {source}")]
    Io {
        /// The path written.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn protocol(msg: impl Into<String>) -> ReceiveError {
    ReceiveError::Protocol(msg.into())
}

fn io_at(path: &str) -> impl FnOnce(io::Error) -> ReceiveError + '_ {
    move |source| ReceiveError::Io {
        path: path.to_owned(),
        source,
    }
}

fn packet(kind: PacketType) -> Packet {
    Packet {
        r#type: kind as i32,
        ..Packet::default()
    }
}

/// Checks a path from the sender: relative, `/`-separated, every component
/// a plain name.
pub fn validate_path(path: &str) -> Result<(), ReceiveError> {
    if path.is_empty() {
        return Err(protocol("empty path"));
    }
    if path.starts_with('/') {
        return Err(protocol(format!("absolute path {path:?}")));
    }
    if path.contains('\0') {
        return Err(protocol(format!("path {path:?} contains NUL")));
    }
    for c in path.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(protocol(format!(
                "path {path:?} is not a clean relative path"
            )));
        }
    }
    Ok(())
}

/// `a/b/c` → `a/b`; `c` → ``.
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// Unix permission bits (with set-id and sticky bits) of a Go file mode.
pub fn unix_permissions(mode: u32) -> u32 {
    let mut p = mode & go_mode::PERM;
    if mode & go_mode::SETUID != 0 {
        p |= 0o4000;
    }
    if mode & go_mode::SETGID != 0 {
        p |= 0o2000;
    }
    if mode & go_mode::STICKY != 0 {
        p |= 0o1000;
    }
    p
}

/// Sets the modification (and access) time of `path` without following a
/// final symlink. `nanos` is nanoseconds since the Unix epoch.
fn set_mtime(path: &Path, nanos: i64) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let ts = libc::timespec {
        tv_sec: nanos.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: nanos.rem_euclid(1_000_000_000) as libc::c_long,
    };
    let times = [ts, ts];
    // SAFETY: `c` is a valid NUL-terminated path and `times` two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn mknod(path: &Path, kind: libc::mode_t, perm: u32, major: i64, minor: i64) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let dev = libc::makedev(major as libc::c_uint, minor as libc::c_uint);
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | perm as libc::mode_t, dev) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

struct Pending {
    path: String,
    file: File,
    stat: Stat,
}

/// The receiver's state for one transfer into `root`. Feed it the sender's
/// packets with [`DirReceiver::handle`]; send back what it returns.
pub struct DirReceiver {
    root: PathBuf,
    /// Index of the next STAT.
    next_id: u32,
    last: Option<String>,
    dirs: HashSet<String>,
    files: HashSet<String>,
    pending: HashMap<u32, Pending>,
    /// Directories whose mode and time are applied at the end (after their
    /// children are written).
    dir_meta: Vec<(String, Stat)>,
    stats_done: bool,
    fin_sent: bool,
    finished: bool,
    bytes: u64,
}

impl DirReceiver {
    /// A receiver writing into the existing directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirReceiver {
            root: root.into(),
            next_id: 0,
            last: None,
            dirs: HashSet::new(),
            files: HashSet::new(),
            pending: HashMap::new(),
            dir_meta: Vec::new(),
            stats_done: false,
            fin_sent: false,
            finished: false,
            bytes: 0,
        }
    }

    /// True once the sender confirmed the end of the transfer.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// File bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Handles one packet from the sender; returns the packets to send back.
    pub fn handle(&mut self, p: Packet) -> Result<Vec<Packet>, ReceiveError> {
        if self.finished {
            return Err(protocol("packet after the end of the transfer"));
        }
        let kind = PacketType::try_from(p.r#type)
            .map_err(|_| protocol(format!("unknown packet type {}", p.r#type)))?;
        let mut out = Vec::new();
        match kind {
            PacketType::PacketStat => match p.stat {
                None => {
                    if self.stats_done {
                        return Err(protocol("second end of entries"));
                    }
                    self.stats_done = true;
                }
                Some(stat) => {
                    if self.stats_done {
                        return Err(protocol("entry after the end of entries"));
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    if let Some(req) = self.entry(id, stat)? {
                        out.push(req);
                    }
                }
            },
            PacketType::PacketData => {
                let Some(pending) = self.pending.get_mut(&p.id) else {
                    return Err(protocol(format!("data for unrequested file {}", p.id)));
                };
                if p.data.is_empty() {
                    let pending = self.pending.remove(&p.id).expect("present");
                    self.close_file(pending)?;
                } else {
                    pending
                        .file
                        .write_all(&p.data)
                        .map_err(io_at(&pending.path))?;
                    self.bytes += p.data.len() as u64;
                }
            }
            PacketType::PacketFin => {
                if !self.fin_sent {
                    return Err(protocol("sender finished before every file arrived"));
                }
                self.finish_dirs()?;
                self.finished = true;
                return Ok(out);
            }
            PacketType::PacketErr => {
                return Err(ReceiveError::Sender(
                    String::from_utf8_lossy(&p.data).into_owned(),
                ))
            }
            PacketType::PacketReq => return Err(protocol("unexpected request from sender")),
        }
        if self.stats_done && self.pending.is_empty() && !self.fin_sent {
            self.fin_sent = true;
            out.push(packet(PacketType::PacketFin));
        }
        Ok(out)
    }

    /// Creates one entry; returns the request for its data, if any.
    fn entry(&mut self, id: u32, stat: Stat) -> Result<Option<Packet>, ReceiveError> {
        let path = stat.path.clone();
        validate_path(&path)?;
        if let Some(last) = &self.last {
            if compare_path(last, &path) != std::cmp::Ordering::Less {
                return Err(protocol(format!(
                    "changes out of order: {path:?} after {last:?}"
                )));
            }
        }
        self.last = Some(path.clone());
        let parent = parent_of(&path);
        if !parent.is_empty() && !self.dirs.contains(parent) {
            return Err(protocol(format!(
                "{path:?}: its parent is not a directory received before it"
            )));
        }
        let host = self.root.join(&path);
        let mode = stat.mode;
        let perm = unix_permissions(mode);
        if mode & go_mode::DIR != 0 {
            fs::create_dir(&host).map_err(io_at(&path))?;
            self.dirs.insert(path.clone());
            self.dir_meta.push((path, stat));
            return Ok(None);
        }
        if mode & go_mode::SYMLINK != 0 {
            std::os::unix::fs::symlink(&stat.linkname, &host).map_err(io_at(&path))?;
            set_mtime(&host, stat.mod_time).map_err(io_at(&path))?;
            return Ok(None);
        }
        if mode & (go_mode::DEVICE | go_mode::NAMED_PIPE) != 0 {
            let kind = if mode & go_mode::NAMED_PIPE != 0 {
                libc::S_IFIFO
            } else if mode & go_mode::CHAR_DEVICE != 0 {
                libc::S_IFCHR
            } else {
                libc::S_IFBLK
            };
            mknod(&host, kind, perm, stat.devmajor, stat.devminor).map_err(io_at(&path))?;
            set_mtime(&host, stat.mod_time).map_err(io_at(&path))?;
            return Ok(None);
        }
        if mode & go_mode::TYPE != 0 {
            // Sockets and irregular files carry no content; fsutil's disk
            // writer skips them too.
            return Ok(None);
        }
        // A regular file, or a hard link to one received earlier.
        if !stat.linkname.is_empty() {
            validate_path(&stat.linkname)?;
            if !self.files.contains(&stat.linkname) {
                return Err(protocol(format!(
                    "{path:?}: hard link to {:?}, which is not a file received before it",
                    stat.linkname
                )));
            }
            fs::hard_link(self.root.join(&stat.linkname), &host).map_err(io_at(&path))?;
            self.files.insert(path);
            return Ok(None);
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&host)
            .map_err(io_at(&path))?;
        self.files.insert(path.clone());
        let pending = Pending { path, file, stat };
        if pending.stat.size == 0 {
            self.close_file(pending)?;
            return Ok(None);
        }
        self.pending.insert(id, pending);
        Ok(Some(Packet {
            id,
            ..packet(PacketType::PacketReq)
        }))
    }

    fn close_file(&mut self, p: Pending) -> Result<(), ReceiveError> {
        let Pending { path, file, stat } = p;
        file.set_permissions(fs::Permissions::from_mode(unix_permissions(stat.mode)))
            .map_err(io_at(&path))?;
        drop(file);
        set_mtime(&self.root.join(&path), stat.mod_time).map_err(io_at(&path))?;
        Ok(())
    }

    /// Applies directory modes and times, deepest first.
    fn finish_dirs(&mut self) -> Result<(), ReceiveError> {
        for (path, stat) in self.dir_meta.drain(..).rev() {
            let host = self.root.join(&path);
            fs::set_permissions(
                &host,
                fs::Permissions::from_mode(unix_permissions(stat.mode)),
            )
            .map_err(io_at(&path))?;
            set_mtime(&host, stat.mod_time).map_err(io_at(&path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn stat(path: &str, mode: u32, size: i64) -> Packet {
        Packet {
            r#type: PacketType::PacketStat as i32,
            stat: Some(Stat {
                path: path.into(),
                mode,
                size,
                mod_time: 1_700_000_000_000_000_000,
                ..Stat::default()
            }),
            ..Packet::default()
        }
    }

    fn link(path: &str, mode: u32, target: &str) -> Packet {
        let mut p = stat(path, mode, 0);
        p.stat.as_mut().unwrap().linkname = target.into();
        p
    }

    fn end() -> Packet {
        packet(PacketType::PacketStat)
    }

    fn data(id: u32, d: &[u8]) -> Packet {
        Packet {
            r#type: PacketType::PacketData as i32,
            id,
            data: d.to_vec(),
            ..Packet::default()
        }
    }

    fn kinds(v: &[Packet]) -> Vec<(i32, u32)> {
        v.iter().map(|p| (p.r#type, p.id)).collect()
    }

    const DIR: u32 = go_mode::DIR | 0o755;

    #[test]
    fn receives_a_tree() {
        let dest = tempfile::tempdir().unwrap();
        let mut r = DirReceiver::new(dest.path());
        assert!(r.handle(stat("bin", DIR, 0)).unwrap().is_empty());
        let req = r
            .handle(stat("bin/tool", go_mode::SETUID | 0o755, 5))
            .unwrap();
        assert_eq!(kinds(&req), [(PacketType::PacketReq as i32, 1)]);
        assert!(r
            .handle(link("bin/tool2", 0o755, "bin/tool"))
            .unwrap()
            .is_empty());
        assert!(r
            .handle(link("bin/x", go_mode::SYMLINK | 0o777, "/etc/passwd"))
            .unwrap()
            .is_empty());
        assert!(r.handle(stat("empty", 0o600, 0)).unwrap().is_empty());
        assert!(r
            .handle(stat("ro", go_mode::DIR | 0o555, 0))
            .unwrap()
            .is_empty());
        let req = r.handle(stat("ro/f", 0o644, 2)).unwrap();
        assert_eq!(kinds(&req), [(PacketType::PacketReq as i32, 6)]);
        assert!(r.handle(end()).unwrap().is_empty());
        assert!(r.handle(data(6, b"ok")).unwrap().is_empty());
        assert!(r.handle(data(6, b"")).unwrap().is_empty());
        assert!(r.handle(data(1, b"hel")).unwrap().is_empty());
        assert!(r.handle(data(1, b"lo")).unwrap().is_empty());
        let fin = r.handle(data(1, b"")).unwrap();
        assert_eq!(kinds(&fin), [(PacketType::PacketFin as i32, 0)]);
        assert!(!r.is_finished());
        assert!(r.handle(packet(PacketType::PacketFin)).unwrap().is_empty());
        assert!(r.is_finished());
        assert_eq!(r.bytes(), 7);

        let root = dest.path();
        assert_eq!(fs::read(root.join("bin/tool")).unwrap(), b"hello");
        let md = fs::metadata(root.join("bin/tool")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o4755);
        assert_eq!(md.mtime(), 1_700_000_000);
        assert_eq!(md.nlink(), 2);
        assert_eq!(
            fs::read_link(root.join("bin/x")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(fs::read(root.join("empty")).unwrap(), b"");
        assert_eq!(fs::read(root.join("ro/f")).unwrap(), b"ok");
        let md = fs::metadata(root.join("ro")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o555);
        assert_eq!(md.mtime(), 1_700_000_000);
        fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn fin_when_nothing_to_request() {
        let dest = tempfile::tempdir().unwrap();
        let mut r = DirReceiver::new(dest.path());
        let fin = r.handle(end()).unwrap();
        assert_eq!(kinds(&fin), [(PacketType::PacketFin as i32, 0)]);
        r.handle(packet(PacketType::PacketFin)).unwrap();
        assert!(r.is_finished());
    }

    #[test]
    fn rejects_paths_outside_dest() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "", "a/."] {
            let dest = tempfile::tempdir().unwrap();
            let mut r = DirReceiver::new(dest.path().join("in"));
            fs::create_dir(dest.path().join("in")).unwrap();
            if bad.starts_with("a/") {
                r.handle(stat("a", DIR, 0)).unwrap();
            }
            let err = r.handle(stat(bad, 0o644, 1)).unwrap_err();
            assert!(matches!(err, ReceiveError::Protocol(_)), "{bad}: {err}");
            assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 1, "{bad}");
        }
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let dest = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut r = DirReceiver::new(dest.path());
        r.handle(link(
            "evil",
            go_mode::SYMLINK | 0o777,
            outside.path().to_str().unwrap(),
        ))
        .unwrap();
        let err = r.handle(stat("evil/pwned", 0o644, 1)).unwrap_err();
        assert!(err.to_string().contains("parent"), "{err}");
        let err = r.handle(stat("evil/sub", DIR, 0)).unwrap_err();
        assert!(err.to_string().contains("parent"), "{err}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn rejects_bad_hard_links_and_order() {
        let dest = tempfile::tempdir().unwrap();
        let mut r = DirReceiver::new(dest.path());
        let err = r.handle(link("a", 0o644, "../etc/passwd")).unwrap_err();
        assert!(matches!(err, ReceiveError::Protocol(_)), "{err}");
        let mut r = DirReceiver::new(dest.path());
        let err = r.handle(link("b", 0o644, "zz")).unwrap_err();
        assert!(err.to_string().contains("hard link"), "{err}");

        let dest = tempfile::tempdir().unwrap();
        let mut r = DirReceiver::new(dest.path());
        r.handle(stat("b", 0o644, 0)).unwrap();
        let err = r.handle(stat("a", 0o644, 0)).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
        let mut r = DirReceiver::new(dest.path().join("nope"));
        let err = r.handle(stat("b", 0o644, 0)).unwrap_err();
        assert!(matches!(err, ReceiveError::Io { .. }), "{err}");
    }

    #[test]
    fn protocol_errors() {
        let dest = tempfile::tempdir().unwrap();
        let mut r = DirReceiver::new(dest.path());
        r.handle(stat("f", 0o644, 3)).unwrap();
        assert!(r.handle(data(7, b"x")).is_err());
        let mut r = DirReceiver::new(dest.path().join("x"));
        fs::create_dir(dest.path().join("x")).unwrap();
        r.handle(stat("f", 0o644, 3)).unwrap();
        r.handle(end()).unwrap();
        // FIN from the sender while a file is still missing.
        assert!(r.handle(packet(PacketType::PacketFin)).is_err());
        let mut r = DirReceiver::new(dest.path());
        let err = r
            .handle(Packet {
                r#type: PacketType::PacketErr as i32,
                data: b"boom".to_vec(),
                ..Packet::default()
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "error from sender: boom");
    }
}
