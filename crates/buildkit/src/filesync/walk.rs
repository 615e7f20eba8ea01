//! The filtered directory walk behind a `DiffCopy`: a port of fsutil's
//! `fs.Walk` (`filepath.WalkDir` over the root) wrapped in its `filterFS`
//! (include/exclude patterns and follow paths).
//!
//! Order: within a directory, entries are visited sorted by the bytes of
//! their names, and a directory's contents right after the directory. That
//! is the order fsutil's receiver validates (paths compared component by
//! component, the separator sorting lowest).
//!
//! Filtering: an entry is sent when it matches the include patterns (if
//! any) and not the exclude patterns. A directory that is filtered out is
//! still descended into when a pattern could re-include something below it
//! (an exception `!pattern` for excludes, a deeper pattern for includes);
//! such a directory is sent lazily, right before the first entry below it
//! that is sent. Symlinks are never followed.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use bollard_buildkit_proto::fsutil::types::Stat;

use super::followlinks::{dedupe_paths, follow_links};
use super::patternmatcher::{MatchInfo, Pattern, PatternError, PatternMatcher};
use super::stat::{make_stat, HardlinkTracker};

/// Why a walk failed.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// An invalid include/exclude pattern.
    #[error("invalid {kind}: {source}")]
    Pattern {
        /// `includepatterns` or `excludepatterns`.
        kind: &'static str,
        /// The pattern error.
        #[source]
        source: PatternError,
    },
    /// A filesystem error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and on which path.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The consumer of the walk stopped it (the stream went away).
    #[error("walk cancelled")]
    Cancelled,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> WalkError {
    let context = context.into();
    move |source| WalkError::Io { context, source }
}

/// Include/exclude patterns and follow paths for one transfer, as sent in
/// the `DiffCopy` request metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterOptions {
    /// Only paths matching one of these (or below a match) are sent.
    pub include_patterns: Vec<String>,
    /// Paths matching these are not sent (`.dockerignore` semantics).
    pub exclude_patterns: Vec<String>,
    /// Paths whose symlinks are resolved into extra include patterns.
    pub follow_paths: Vec<String>,
}

/// One entry of the walk, in protocol order.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    /// Where the entry is on the host.
    pub abs_path: PathBuf,
    /// Its `Stat`, with `path` relative to the root, `/`-separated.
    pub stat: Stat,
}

/// A prepared walk over one directory (fsutil's `NewFS` + `NewFilterFS`).
#[derive(Debug)]
pub struct Walker {
    root: PathBuf,
    include: Option<PatternMatcher>,
    exclude: Option<PatternMatcher>,
    only_prefix_includes: bool,
    only_prefix_exclude_exceptions: bool,
}

/// Pattern characters; patterns without them (except a trailing `/*` or
/// `/**`) are plain path prefixes, which lets the walk skip directories.
const PATTERN_CHARS: &[char] = &['*', '[', ']', '?', '^', '\\'];

/// fsutil's `patternWithoutTrailingGlob`.
fn pattern_without_trailing_glob(p: &Pattern) -> &str {
    let s = p.as_str();
    let s = s.strip_suffix("/**").unwrap_or(s);
    s.strip_suffix("/*").unwrap_or(s)
}

/// Whether a pattern of the wanted kind could match something below the
/// directory `dir_slash` (`"dir/"`).
fn could_match_below(pm: &PatternMatcher, exclusion: bool, dir_slash: &str) -> bool {
    pm.patterns()
        .iter()
        .filter(|p| p.exclusion() == exclusion)
        .any(|p| format!("{}/", pattern_without_trailing_glob(p)).starts_with(dir_slash))
}

/// State of a directory on the current walk path (fsutil's `visitedDir`).
#[derive(Debug)]
struct VisitedDir {
    abs: PathBuf,
    /// The relative path (lossily converted when not UTF-8).
    rel: String,
    /// Whether `rel` is the exact path (every name on it is UTF-8).
    exact: bool,
    include_info: MatchInfo,
    exclude_info: MatchInfo,
    /// Its `Stat` was sent already.
    sent: bool,
    /// It was filtered out (so a permission error reading it is ignored).
    skipped: bool,
}

/// What to do after visiting an entry.
enum Visit {
    /// Do not descend (the entry is not a directory, or nothing below it
    /// can be included).
    Done,
    /// Descend into this directory.
    Descend(VisitedDir),
}

impl Walker {
    /// Prepares a walk of `root` (resolving symlinks in `root` itself) with
    /// the given filters.
    pub fn new(root: &Path, opts: &FilterOptions) -> Result<Self, WalkError> {
        let root = fs::canonicalize(root).map_err(io_err(format!("resolve {}", root.display())))?;
        let md = fs::metadata(&root).map_err(io_err(format!("stat {}", root.display())))?;
        if !md.is_dir() {
            return Err(WalkError::Io {
                context: format!("stat {}", root.display()),
                source: io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }

        let mut include_patterns = opts.include_patterns.clone();
        if !opts.follow_paths.is_empty() {
            let targets = follow_links(&root, &opts.follow_paths)
                .map_err(io_err("failed to resolve follow paths"))?;
            if let Some(targets) = targets {
                include_patterns.extend(targets);
                include_patterns = dedupe_paths(&include_patterns).unwrap_or_default();
            }
        }

        let mut walker = Walker {
            root,
            include: None,
            exclude: None,
            only_prefix_includes: true,
            only_prefix_exclude_exceptions: true,
        };
        if !include_patterns.is_empty() {
            let pm =
                PatternMatcher::new(&include_patterns).map_err(|source| WalkError::Pattern {
                    kind: "includepatterns",
                    source,
                })?;
            walker.only_prefix_includes = !pm.patterns().iter().any(|p| {
                !p.exclusion() && pattern_without_trailing_glob(p).contains(PATTERN_CHARS)
            });
            walker.include = Some(pm);
        }
        if !opts.exclude_patterns.is_empty() {
            let pm = PatternMatcher::new(&opts.exclude_patterns).map_err(|source| {
                WalkError::Pattern {
                    kind: "excludepatterns",
                    source,
                }
            })?;
            walker.only_prefix_exclude_exceptions = !pm
                .patterns()
                .iter()
                .any(|p| p.exclusion() && pattern_without_trailing_glob(p).contains(PATTERN_CHARS));
            walker.exclude = Some(pm);
        }
        Ok(walker)
    }

    /// The resolved root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Walks the tree, calling `emit` for every entry to send, in protocol
    /// order. An error from `emit` stops the walk and is returned.
    pub fn walk<F>(&self, mut emit: F) -> Result<(), WalkError>
    where
        F: FnMut(WalkEntry) -> Result<(), WalkError>,
    {
        let mut stack: Vec<VisitedDir> = Vec::new();
        let mut links = HardlinkTracker::default();
        let root = self.root.clone();
        let entries = read_dir_sorted(&root).map_err(io_err(format!("open {}", root.display())))?;
        self.walk_entries(&root, "", entries, &mut stack, &mut links, &mut emit)
    }

    fn walk_entries<F>(
        &self,
        dir_abs: &Path,
        dir_rel: &str,
        entries: Vec<(OsString, fs::FileType)>,
        stack: &mut Vec<VisitedDir>,
        links: &mut HardlinkTracker,
        emit: &mut F,
    ) -> Result<(), WalkError>
    where
        F: FnMut(WalkEntry) -> Result<(), WalkError>,
    {
        let parent_exact = stack.last().is_none_or(|p| p.exact);
        for (name, file_type) in entries {
            let name_str = String::from_utf8_lossy(name.as_bytes());
            let rel = if dir_rel.is_empty() {
                name_str.into_owned()
            } else {
                format!("{dir_rel}/{name_str}")
            };
            let entry = Entry {
                abs: dir_abs.join(&name),
                rel,
                exact: parent_exact && std::str::from_utf8(name.as_bytes()).is_ok(),
                is_dir: file_type.is_dir(),
            };
            let Visit::Descend(dir) = self.visit(entry, stack, links, emit)? else {
                continue;
            };
            let children = match read_dir_sorted(&dir.abs) {
                Ok(children) => children,
                // Gone or replaced meanwhile: fsutil skips it.
                Err(e) if is_not_exist(&e) => continue,
                // Unreadable but filtered out anyway: fsutil skips it.
                Err(e) if dir.skipped && e.kind() == io::ErrorKind::PermissionDenied => continue,
                Err(e) => return Err(io_err(format!("open {}", dir.abs.display()))(e)),
            };
            let (child_abs, child_rel) = (dir.abs.clone(), dir.rel.clone());
            stack.push(dir);
            let res = self.walk_entries(&child_abs, &child_rel, children, stack, links, emit);
            stack.pop();
            res?;
        }
        Ok(())
    }

    /// fsutil's `filterFS.Walk` callback for one entry.
    fn visit<F>(
        &self,
        entry: Entry,
        stack: &mut [VisitedDir],
        links: &mut HardlinkTracker,
        emit: &mut F,
    ) -> Result<Visit, WalkError>
    where
        F: FnMut(WalkEntry) -> Result<(), WalkError>,
    {
        let Entry {
            abs,
            rel,
            exact,
            is_dir,
        } = entry;
        let empty = MatchInfo::default();
        let parent = stack.last();
        let mut include_info = MatchInfo::default();
        let mut exclude_info = MatchInfo::default();
        let mut skip = false;

        if let Some(include) = &self.include {
            let parent_info = parent.map_or(&empty, |p| &p.include_info);
            let (m, info) = include
                .matches_using_parent_results(&rel, parent_info)
                .map_err(|source| WalkError::Pattern {
                    kind: "includepatterns",
                    source,
                })?;
            if is_dir {
                include_info = info;
            }
            if !m {
                if is_dir
                    && self.only_prefix_includes
                    && !could_match_below(include, false, &format!("{rel}/"))
                {
                    // No include pattern can match anything inside.
                    return Ok(Visit::Done);
                }
                skip = true;
            }
        }

        if let Some(exclude) = &self.exclude {
            let parent_info = parent.map_or(&empty, |p| &p.exclude_info);
            let (m, info) = exclude
                .matches_using_parent_results(&rel, parent_info)
                .map_err(|source| WalkError::Pattern {
                    kind: "excludepatterns",
                    source,
                })?;
            if is_dir {
                exclude_info = info;
            }
            if m {
                if is_dir
                    && self.only_prefix_exclude_exceptions
                    && (!exclude.exclusions()
                        || !could_match_below(exclude, true, &format!("{rel}/")))
                {
                    // No exception can re-include anything inside.
                    return Ok(Visit::Done);
                }
                skip = true;
            }
        }

        let mut dir = VisitedDir {
            abs,
            rel,
            exact,
            include_info,
            exclude_info,
            sent: false,
            skipped: skip,
        };

        if !skip {
            if !dir.exact {
                return Err(not_utf8(&dir.abs));
            }
            let md = match fs::symlink_metadata(&dir.abs) {
                Ok(md) => md,
                // Removed since the directory was read.
                Err(e) if is_not_exist(&e) => return Ok(Visit::Done),
                Err(e) => return Err(io_err(format!("lstat {}", dir.abs.display()))(e)),
            };
            let stat = make_stat(&dir.abs, &dir.rel, &md, Some(links))
                .map_err(io_err(format!("stat {}", dir.abs.display())))?;
            // First the parent directories that were filtered out but now
            // contain something to send.
            for parent in stack.iter_mut().filter(|p| !p.sent) {
                if !parent.exact {
                    return Err(not_utf8(&parent.abs));
                }
                let md = fs::symlink_metadata(&parent.abs)
                    .map_err(io_err(format!("lstat {}", parent.abs.display())))?;
                let parent_stat = make_stat(&parent.abs, &parent.rel, &md, None)
                    .map_err(io_err(format!("stat {}", parent.abs.display())))?;
                parent.sent = true;
                emit(WalkEntry {
                    abs_path: parent.abs.clone(),
                    stat: parent_stat,
                })?;
            }
            dir.sent = true;
            emit(WalkEntry {
                abs_path: dir.abs.clone(),
                stat,
            })?;
        }

        if is_dir {
            Ok(Visit::Descend(dir))
        } else {
            Ok(Visit::Done)
        }
    }
}

/// An entry to visit.
struct Entry {
    abs: PathBuf,
    rel: String,
    exact: bool,
    is_dir: bool,
}

/// The error for a path to send whose name is not UTF-8 (protobuf strings
/// cannot carry it).
fn not_utf8(abs: &Path) -> WalkError {
    WalkError::Io {
        context: format!("cannot send {}", abs.display()),
        source: io::Error::new(io::ErrorKind::InvalidData, "file name is not valid UTF-8"),
    }
}

/// A staging entry of a running mybake build (`.mybake-PID-HEX8`,
/// `.NAME.mybake-PID-HEX8`) or its lock file (`….lock`).
pub fn is_mybake_staging(name: &[u8]) -> bool {
    let name = name.strip_suffix(b".lock").unwrap_or(name);
    if name.first() != Some(&b'.') {
        return false;
    }
    let Some(i) = name.windows(8).rposition(|w| w == b".mybake-") else {
        return false;
    };
    let rest = &name[i + 8..];
    let Some(dash) = rest.iter().position(|&b| b == b'-') else {
        return false;
    };
    let (pid, hex) = (&rest[..dash], &rest[dash + 1..]);
    !pid.is_empty()
        && pid.iter().all(u8::is_ascii_digit)
        && hex.len() == 8
        && hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_not_exist(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// The entries of a directory (name and `lstat` type), sorted by the bytes
/// of their names like Go's `os.ReadDir`. mybake's own staging entries
/// ([`is_mybake_staging`]) are left out: an output whose destination is
/// inside a build context (`output "local" dest="."`) must not feed a
/// running build's half-written export into another build's context.
fn read_dir_sorted(dir: &Path) -> io::Result<Vec<(OsString, fs::FileType)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if is_mybake_staging(entry.file_name().as_bytes()) {
            continue;
        }
        out.push((entry.file_name(), entry.file_type()?));
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

/// fsutil's `ComparePath`: byte-wise, except that `/` sorts before every
/// other byte. Entries must be sent in increasing order of this.
pub fn compare_path(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (&x, &y) in a.iter().zip(b.iter()) {
        if x == y {
            continue;
        }
        if x == b'/' {
            return Ordering::Less;
        }
        if y == b'/' {
            return Ordering::Greater;
        }
        return x.cmp(&y);
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn walk(root: &Path, opts: &FilterOptions) -> Result<Vec<String>, WalkError> {
        let walker = Walker::new(root, opts)?;
        let mut out = Vec::new();
        walker.walk(|e| {
            out.push(e.stat.path);
            Ok(())
        })?;
        Ok(out)
    }

    fn tree(paths: &[&str]) -> io::Result<tempfile::TempDir> {
        let tmp = tempfile::tempdir()?;
        for p in paths {
            let full = tmp.path().join(p.trim_end_matches('/'));
            if p.ends_with('/') {
                fs::create_dir_all(full)?;
            } else {
                if let Some(parent) = full.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::write(full, p)?;
            }
        }
        Ok(tmp)
    }

    #[test]
    fn mybake_staging_is_never_sent() {
        let tmp = tree(&[
            "a",
            ".mybake-12-0000beef/linux_amd64/f",
            ".mybake-12-0000beef.lock",
            ".app.tar.mybake-12-0000beef/x",
            ".mybake-notes",
            ".mybake-12-BEEF/f",
            "b.mybake-12-0000beef",
        ])
        .unwrap();
        let got = walk(tmp.path(), &FilterOptions::default()).unwrap();
        assert_eq!(
            got,
            [
                ".mybake-12-BEEF",
                ".mybake-12-BEEF/f",
                ".mybake-notes",
                "a",
                "b.mybake-12-0000beef"
            ]
        );
    }

    fn excludes(patterns: &[&str]) -> FilterOptions {
        FilterOptions {
            exclude_patterns: patterns.iter().map(|s| (*s).to_owned()).collect(),
            ..FilterOptions::default()
        }
    }

    fn includes(patterns: &[&str]) -> FilterOptions {
        FilterOptions {
            include_patterns: patterns.iter().map(|s| (*s).to_owned()).collect(),
            ..FilterOptions::default()
        }
    }

    #[test]
    fn compare_path_separator_lowest() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_path("a/b", "a-b"), Less);
        assert_eq!(compare_path("a-b", "a/b"), Greater);
        assert_eq!(compare_path("a", "a/b"), Less);
        assert_eq!(compare_path("a/b", "a/b"), Equal);
        assert_eq!(compare_path("a.txt", "a/z"), Greater);
        assert_eq!(compare_path("ab", "b"), Less);
    }

    #[test]
    fn order_is_walk_order() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tree(&["a-b", "a/x", "a/y/z", "a.txt", "B", "b", "a0", "a/-"])?;
        let got = walk(tmp.path(), &FilterOptions::default())?;
        assert_eq!(
            got,
            ["B", "a", "a/-", "a/x", "a/y", "a/y/z", "a-b", "a.txt", "a0", "b"]
        );
        for pair in got.windows(2) {
            assert_eq!(compare_path(&pair[0], &pair[1]), std::cmp::Ordering::Less);
        }
        Ok(())
    }

    #[test]
    fn symlinks_not_followed() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tree(&["real/file"])?;
        symlink("real", tmp.path().join("link"))?;
        symlink("/nonexistent", tmp.path().join("dangling"))?;
        let got = walk(tmp.path(), &FilterOptions::default())?;
        assert_eq!(got, ["dangling", "link", "real", "real/file"]);
        Ok(())
    }

    #[test]
    fn excludes_with_exceptions() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tree(&[
            "Dockerfile",
            "node_modules/a/index.js",
            "node_modules/keep/x.js",
            "src/main.rs",
            "src/gen/out.rs",
            "docs/README.md",
            "docs/other.md",
            "target/",
            "x.log",
            "sub/y.log",
        ])?;
        let got = walk(
            tmp.path(),
            &excludes(&[
                "node_modules",
                "!node_modules/keep",
                "**/*.log",
                "docs",
                "!docs/README.md",
                "src/gen",
                "target",
            ]),
        )?;
        assert_eq!(
            got,
            [
                "Dockerfile",
                "docs",
                "docs/README.md",
                "node_modules",
                "node_modules/keep",
                "node_modules/keep/x.js",
                "src",
                "src/main.rs",
                "sub",
            ]
        );
        Ok(())
    }

    #[test]
    fn exception_with_glob_walks_everything() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tree(&["a/b/c.txt", "a/b/d.go", "e/f.txt"])?;
        let got = walk(tmp.path(), &excludes(&["*", "!**/*.go"]))?;
        assert_eq!(got, ["a", "a/b", "a/b/d.go"]);
        Ok(())
    }

    #[test]
    fn includes_only() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tree(&[
            "Dockerfile",
            "Dockerfile.dockerignore",
            ".dockerignore",
            "sub/Dockerfile",
            "other",
        ])?;
        let got = walk(tmp.path(), &includes(&["Dockerfile", ".dockerignore"]))?;
        assert_eq!(got, [".dockerignore", "Dockerfile"]);
        let got = walk(tmp.path(), &includes(&["sub/Dockerfile"]))?;
        assert_eq!(got, ["sub", "sub/Dockerfile"]);
        let got = walk(tmp.path(), &includes(&["**/Dockerfile"]))?;
        assert_eq!(got, ["Dockerfile", "sub", "sub/Dockerfile"]);
        let got = walk(tmp.path(), &includes(&["sub"]))?;
        assert_eq!(got, ["sub", "sub/Dockerfile"]);
        Ok(())
    }

    #[test]
    fn follow_paths_add_targets() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tree(&["real/Dockerfile", "other"])?;
        symlink("real/Dockerfile", tmp.path().join("Dockerfile"))?;
        let opts = FilterOptions {
            include_patterns: vec!["Dockerfile".into()],
            follow_paths: vec!["Dockerfile".into()],
            ..FilterOptions::default()
        };
        let got = walk(tmp.path(), &opts)?;
        assert_eq!(got, ["Dockerfile", "real", "real/Dockerfile"]);
        Ok(())
    }

    #[test]
    fn non_utf8_names_fail_only_when_sent() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tree(&["ok", "junk/"])?;
        let bad = std::ffi::OsStr::from_bytes(b"bad\xff.bin");
        fs::write(tmp.path().join(bad), "x")?;
        fs::write(tmp.path().join("junk").join(bad), "x")?;
        assert!(matches!(
            walk(tmp.path(), &FilterOptions::default()),
            Err(WalkError::Io { .. })
        ));
        let got = walk(tmp.path(), &excludes(&["*.bin", "junk"]))?;
        assert_eq!(got, ["ok"]);
        Ok(())
    }

    #[test]
    fn invalid_patterns_are_errors() -> io::Result<()> {
        let tmp = tree(&["a"])?;
        assert!(matches!(
            walk(tmp.path(), &excludes(&["["])),
            Err(WalkError::Pattern { .. })
        ));
        assert!(matches!(
            walk(tmp.path(), &includes(&["!"])),
            Err(WalkError::Pattern { .. })
        ));
        Ok(())
    }

    #[test]
    fn root_must_be_a_directory() -> io::Result<()> {
        let tmp = tree(&["file"])?;
        assert!(Walker::new(&tmp.path().join("file"), &FilterOptions::default()).is_err());
        assert!(Walker::new(&tmp.path().join("missing"), &FilterOptions::default()).is_err());
        Ok(())
    }
}
