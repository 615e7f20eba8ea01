//! Building fsutil `Stat` messages from `lstat(2)` results, as fsutil's
//! `mkstat`/`setUnixOpt` do: Go `os.FileMode` bits, owner, size, mtime in
//! nanoseconds, symlink targets, device numbers, hardlinks and xattrs.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bollard_buildkit_proto::fsutil::types::Stat;

/// Go `os.FileMode` bits (`io/fs`), which fsutil puts on the wire in
/// `Stat.mode` instead of Unix `S_IF*` bits.
pub mod go_mode {
    /// `ModeDir`: a directory.
    pub const DIR: u32 = 1 << 31;
    /// `ModeAppend`: append-only.
    pub const APPEND: u32 = 1 << 30;
    /// `ModeExclusive`: exclusive use.
    pub const EXCLUSIVE: u32 = 1 << 29;
    /// `ModeTemporary`: temporary file (Plan 9).
    pub const TEMPORARY: u32 = 1 << 28;
    /// `ModeSymlink`: a symbolic link.
    pub const SYMLINK: u32 = 1 << 27;
    /// `ModeDevice`: a device file.
    pub const DEVICE: u32 = 1 << 26;
    /// `ModeNamedPipe`: a FIFO.
    pub const NAMED_PIPE: u32 = 1 << 25;
    /// `ModeSocket`: a Unix domain socket.
    pub const SOCKET: u32 = 1 << 24;
    /// `ModeSetuid`.
    pub const SETUID: u32 = 1 << 23;
    /// `ModeSetgid`.
    pub const SETGID: u32 = 1 << 22;
    /// `ModeCharDevice`: a character device (with `DEVICE`).
    pub const CHAR_DEVICE: u32 = 1 << 21;
    /// `ModeSticky`.
    pub const STICKY: u32 = 1 << 20;
    /// `ModeIrregular`: a non-regular file of unknown type.
    pub const IRREGULAR: u32 = 1 << 19;
    /// `ModeType`: the bits that make a file non-regular.
    pub const TYPE: u32 = DIR | SYMLINK | NAMED_PIPE | SOCKET | DEVICE | CHAR_DEVICE | IRREGULAR;
    /// `ModePerm`: the Unix permission bits.
    pub const PERM: u32 = 0o777;
}

// Unix file type bits (st_mode), identical on Linux and the BSDs.
const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFBLK: u32 = 0o060000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFIFO: u32 = 0o010000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;

/// Converts a Unix `st_mode` into Go's `os.FileMode`, as Go's
/// `fillFileStatFromSys` does on Linux.
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut mode = st_mode & go_mode::PERM;
    match st_mode & S_IFMT {
        S_IFBLK => mode |= go_mode::DEVICE,
        S_IFCHR => mode |= go_mode::DEVICE | go_mode::CHAR_DEVICE,
        S_IFDIR => mode |= go_mode::DIR,
        S_IFIFO => mode |= go_mode::NAMED_PIPE,
        S_IFLNK => mode |= go_mode::SYMLINK,
        S_IFSOCK => mode |= go_mode::SOCKET,
        S_IFREG => {}
        _ => {}
    }
    if st_mode & S_ISGID != 0 {
        mode |= go_mode::SETGID;
    }
    if st_mode & S_ISUID != 0 {
        mode |= go_mode::SETUID;
    }
    if st_mode & S_ISVTX != 0 {
        mode |= go_mode::STICKY;
    }
    mode
}

/// Whether the receiver may request the contents of an entry with this
/// (Go) mode: fsutil's `fileCanRequestData`, regular files only.
pub fn can_request_data(mode: u32) -> bool {
    mode & go_mode::TYPE == 0
}

/// fsutil's device number split (the classic Linux encoding).
fn major(dev: u64) -> u64 {
    (dev >> 8) & 0xfff
}

fn minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & 0xfff00)
}

/// Remembers the first path seen for each multiply-linked inode, so later
/// links are sent as hardlinks (`Stat.linkname` on a regular file).
#[derive(Debug, Default)]
pub struct HardlinkTracker {
    seen: HashMap<(u64, u64), String>,
}

/// Error for a name that cannot travel in a protobuf `string`.
fn non_utf8(what: &str, path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what} of {} is not valid UTF-8", path.display()),
    )
}

/// Builds the `Stat` for `abs` (whose `lstat` result is `md`) to be sent
/// under the relative `/`-separated path `rel`, like fsutil's `mkstat`.
/// `links` tracks hardlinks; pass `None` for directories replayed later.
pub fn make_stat(
    abs: &Path,
    rel: &str,
    md: &Metadata,
    links: Option<&mut HardlinkTracker>,
) -> io::Result<Stat> {
    let st_mode = md.mode();
    let mut stat = Stat {
        path: rel.to_owned(),
        mode: go_file_mode(st_mode),
        uid: md.uid(),
        gid: md.gid(),
        mod_time: md
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec()),
        ..Stat::default()
    };
    let is_dir = md.is_dir();
    if !is_dir {
        // fsutil tests the type bits with "&", not "==" (symlinks and
        // sockets pass too, but their rdev is 0).
        if st_mode & S_IFBLK != 0 || st_mode & S_IFCHR != 0 {
            let rdev = md.rdev();
            stat.devmajor = i64::try_from(major(rdev)).unwrap_or_default();
            stat.devminor = i64::try_from(minor(rdev)).unwrap_or_default();
        }
        if let Some(links) = links {
            let key = (md.dev(), md.ino());
            let mut linked = false;
            if md.nlink() > 1 {
                if let Some(first) = links.seen.get(&key) {
                    stat.linkname = first.clone();
                    linked = true;
                }
            }
            if !linked {
                links.seen.insert(key, rel.to_owned());
            }
        }
        stat.size = i64::try_from(md.size()).unwrap_or(i64::MAX);
        if md.file_type().is_symlink() {
            let target = std::fs::read_link(abs)?;
            stat.linkname = target
                .to_str()
                .ok_or_else(|| non_utf8("symlink target", abs))?
                .to_owned();
        }
        // Note: setUnixOpt zeroes the size of a hardlink, but mkstat then
        // overwrites it with the file size; hardlinks keep their size.
    }
    stat.xattrs = xattrs::load(abs)?;
    // archive/tar cannot represent sockets; fsutil clears the bit.
    stat.mode &= !go_mode::SOCKET;
    Ok(stat)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod xattrs {
    //! Extended attributes via `llistxattr`/`lgetxattr` (never following
    //! symlinks), skipping `com.apple.*` like fsutil.

    use std::collections::HashMap;
    use std::ffi::CString;
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    /// Calls a size-probing xattr function twice: once for the size and
    /// once to fill a buffer of that size (retrying if it grew).
    fn read_sized(mut f: impl FnMut(*mut libc::c_char, usize) -> isize) -> io::Result<Vec<u8>> {
        loop {
            let size = f(std::ptr::null_mut(), 0);
            if size < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
            if buf.is_empty() {
                return Ok(buf);
            }
            let n = f(buf.as_mut_ptr().cast(), buf.len());
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::ERANGE) {
                    continue;
                }
                return Err(err);
            }
            buf.truncate(usize::try_from(n).unwrap_or(0));
            return Ok(buf);
        }
    }

    /// Reads every extended attribute of `path`; `ENOTSUP` means none.
    pub fn load(path: &Path) -> io::Result<HashMap<String, Vec<u8>>> {
        let mut out = HashMap::new();
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: cpath is a valid NUL-terminated string and the buffer
        // pointer/length pair describes writable memory (or is null/0).
        let names =
            match read_sized(|buf, len| unsafe { libc::llistxattr(cpath.as_ptr(), buf, len) }) {
                Ok(names) => names,
                Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(out),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("failed to xattr {}: {e}", path.display()),
                    ))
                }
            };
        for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            if name.starts_with(b"com.apple.") {
                continue;
            }
            let Ok(key) = std::str::from_utf8(name) else {
                continue;
            };
            let Ok(cname) = CString::new(name) else {
                continue;
            };
            // SAFETY: as above; both strings are NUL-terminated.
            let value = read_sized(|buf, len| unsafe {
                libc::lgetxattr(cpath.as_ptr(), cname.as_ptr(), buf.cast(), len)
            });
            // fsutil ignores attributes that cannot be read.
            if let Ok(value) = value {
                out.insert(key.to_owned(), value);
            }
        }
        Ok(out)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod xattrs {
    //! Extended attributes are only sent from Linux.

    use std::collections::HashMap;
    use std::io;
    use std::path::Path;

    /// No extended attributes on this platform.
    pub fn load(_path: &Path) -> io::Result<HashMap<String, Vec<u8>>> {
        Ok(HashMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_bits_match_go() {
        assert_eq!(go_file_mode(S_IFREG | 0o644), 0o644);
        assert_eq!(go_file_mode(S_IFREG | 0o755), 0o755);
        assert_eq!(go_file_mode(S_IFDIR | 0o755), go_mode::DIR | 0o755);
        assert_eq!(go_file_mode(S_IFLNK | 0o777), go_mode::SYMLINK | 0o777);
        assert_eq!(go_file_mode(S_IFIFO | 0o600), go_mode::NAMED_PIPE | 0o600);
        assert_eq!(go_file_mode(S_IFSOCK | 0o755), go_mode::SOCKET | 0o755);
        assert_eq!(go_file_mode(S_IFBLK | 0o660), go_mode::DEVICE | 0o660);
        assert_eq!(
            go_file_mode(S_IFCHR | 0o666),
            go_mode::DEVICE | go_mode::CHAR_DEVICE | 0o666
        );
        assert_eq!(
            go_file_mode(S_IFREG | S_ISUID | S_ISGID | 0o755),
            go_mode::SETUID | go_mode::SETGID | 0o755
        );
        assert_eq!(
            go_file_mode(S_IFDIR | S_ISVTX | 0o777),
            go_mode::DIR | go_mode::STICKY | 0o777
        );
        // The literal values Go uses.
        assert_eq!(go_mode::DIR, 0x8000_0000);
        assert_eq!(go_mode::SYMLINK, 0x0800_0000);
        assert_eq!(go_mode::NAMED_PIPE, 0x0200_0000);
        assert_eq!(go_mode::SETUID, 0x0080_0000);
        assert_eq!(go_mode::TYPE, 0x8f28_0000);
    }

    #[test]
    fn requestable_only_regular() {
        assert!(can_request_data(0o644));
        assert!(can_request_data(go_mode::SETUID | 0o755));
        assert!(!can_request_data(go_mode::DIR | 0o755));
        assert!(!can_request_data(go_mode::SYMLINK | 0o777));
        assert!(!can_request_data(go_mode::NAMED_PIPE | 0o644));
        assert!(!can_request_data(go_mode::DEVICE | 0o644));
    }

    #[test]
    fn device_numbers() {
        // makedev(8, 1) in the classic encoding.
        assert_eq!(major(0x0801), 8);
        assert_eq!(minor(0x0801), 1);
        // Minor numbers above 255 use bits 20..31.
        assert_eq!(minor((0x100 << 12) | 0x0801), 0x101);
    }

    #[test]
    fn stat_of_files() -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello")?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))?;
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("f", &link)?;
        let hard = dir.path().join("h");
        std::fs::hard_link(&file, &hard)?;

        let mut links = HardlinkTracker::default();
        let md = std::fs::symlink_metadata(&file)?;
        let st = make_stat(&file, "f", &md, Some(&mut links))?;
        assert_eq!(st.path, "f");
        assert_eq!(st.mode, 0o755);
        assert_eq!(st.size, 5);
        assert_eq!(st.uid, md.uid());
        assert_eq!(st.mod_time, md.mtime() * 1_000_000_000 + md.mtime_nsec());
        assert!(st.linkname.is_empty());

        let md = std::fs::symlink_metadata(&hard)?;
        let st = make_stat(&hard, "h", &md, Some(&mut links))?;
        assert_eq!(st.linkname, "f");
        assert_eq!(st.size, 5);

        let md = std::fs::symlink_metadata(&link)?;
        let st = make_stat(&link, "l", &md, Some(&mut links))?;
        assert_eq!(st.mode, go_mode::SYMLINK | 0o777);
        assert_eq!(st.linkname, "f");
        assert_eq!(st.size, 1);

        let md = std::fs::symlink_metadata(dir.path())?;
        let st = make_stat(dir.path(), "d", &md, None)?;
        assert_eq!(st.mode & go_mode::DIR, go_mode::DIR);
        assert_eq!(st.size, 0);
        Ok(())
    }
}
