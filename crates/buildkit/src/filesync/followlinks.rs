//! `followpaths`: fsutil's `FollowLinks`. BuildKit sends the paths whose
//! symlinks it wants resolved (the Dockerfile, for example); every symlink
//! on the way and its target are added to the include patterns. Symlinks
//! are still sent as symlinks; only their targets get included too.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use super::gopath;

/// Resolves `paths` under `root` into the sorted, deduplicated list of
/// paths to include (`None` when one of them is the root itself, meaning
/// no restriction).
pub fn follow_links(root: &Path, paths: &[String]) -> io::Result<Option<Vec<String>>> {
    let mut resolver = Resolver {
        root,
        resolved: BTreeSet::new(),
    };
    for p in paths {
        resolver.append(p)?;
    }
    let res: Vec<String> = resolver.resolved.into_iter().collect();
    Ok(dedupe_paths(&res))
}

struct Resolver<'a> {
    root: &'a Path,
    resolved: BTreeSet<String>,
}

impl Resolver<'_> {
    fn append(&mut self, p: &str) -> io::Result<()> {
        let mut p = gopath::join(&[".", p]);
        let mut current = ".".to_owned();
        loop {
            let (first, rest) = match p.split_once('/') {
                Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
                None => (p.clone(), None),
            };
            current = gopath::join(&[&current, &first]);
            let targets = self.read_symlink(&current, true)?;
            p = rest.unwrap_or_default();
            if (p.is_empty() || targets.is_some()) && self.resolved.contains(&current) {
                return Ok(());
            }
            if let Some(targets) = targets {
                self.resolved.insert(current.clone());
                for target in targets {
                    self.append(&gopath::join(&[&target, &p]))?;
                }
                return Ok(());
            }
            if p.is_empty() {
                self.resolved.insert(current);
                return Ok(());
            }
        }
    }

    /// The targets of the symlink `p` (relative to the root), made absolute
    /// within the root; with a wildcard in the last element, of every
    /// matching symlink in its directory. `None` when there is none.
    fn read_symlink(&self, p: &str, allow_wildcard: bool) -> io::Result<Option<Vec<String>>> {
        let base = gopath::base(p);
        if allow_wildcard && contains_wildcards(&base) {
            let dir = gopath::dir(p);
            let Some(names) = self.read_dir(&dir)? else {
                return Ok(None);
            };
            let mut out: Option<Vec<String>> = None;
            for name in names {
                if gopath::glob_match(&base, &name).unwrap_or(false) {
                    if let Some(res) = self.read_symlink(&gopath::join(&[&dir, &name]), false)? {
                        out.get_or_insert_with(Vec::new).extend(res);
                    }
                }
            }
            return Ok(out);
        }
        let Some(abs) = self.abs(p) else {
            return Ok(None);
        };
        let md = match std::fs::symlink_metadata(&abs) {
            Ok(md) => md,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !md.file_type().is_symlink() {
            return Ok(None);
        }
        let target = std::fs::read_link(&abs)?;
        let link = gopath::clean(&target.to_string_lossy());
        if link.starts_with('/') {
            return Ok(Some(vec![link]));
        }
        Ok(Some(vec![gopath::join(&["/", &gopath::dir(p), &link])]))
    }

    /// Names in the directory `dir` (relative to the root).
    fn read_dir(&self, dir: &str) -> io::Result<Option<Vec<String>>> {
        let Some(abs) = self.abs(dir) else {
            return Ok(None);
        };
        let rd = match std::fs::read_dir(&abs) {
            Ok(rd) => rd,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(io::Error::new(e.kind(), format!("readdir: {e}"))),
        };
        let mut names = Vec::new();
        for entry in rd {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(Some(names))
    }

    /// The host path of a cleaned relative path; `None` for the root itself
    /// (never a symlink here) or a path that leaves the root.
    fn abs(&self, rel: &str) -> Option<std::path::PathBuf> {
        let rel = gopath::clean(rel);
        if rel == "." || rel == "/" || rel == ".." || rel.starts_with("../") {
            return None;
        }
        Some(self.root.join(rel.trim_start_matches('/')))
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// fsutil's `containsWildcards` (`\` escapes the next byte).
fn contains_wildcards(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// fsutil's `dedupePaths`: drops paths below an earlier one (the input is
/// expected sorted); `None` when one of them is `"."` (everything).
pub fn dedupe_paths(paths: &[String]) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(paths.len());
    let mut last = String::new();
    for s in paths {
        if s == "." {
            return None;
        }
        if s.starts_with(&format!("{last}/")) {
            continue;
        }
        out.push(s.clone());
        last.clone_from(s);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn follow_links() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        std::fs::create_dir(root.join("dir"))?;
        std::fs::write(root.join("dir/foo"), "contents")?;
        symlink("foo", root.join("dir/l1"))?;
        symlink("dir/l1", root.join("l2"))?;
        std::fs::write(root.join("bar"), "")?;
        std::fs::write(root.join("baz"), "")?;
        let out = super::follow_links(root, &strings(&["l2", "bar"]))?;
        assert_eq!(out, Some(strings(&["bar", "dir/foo", "dir/l1", "l2"])));
        Ok(())
    }

    #[test]
    fn follow_links_loop() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        symlink("l1", root.join("l1"))?;
        symlink("l2", root.join("l3"))?;
        symlink("l3", root.join("l2"))?;
        let out = super::follow_links(root, &strings(&["l1", "l3"]))?;
        assert_eq!(out, Some(strings(&["l1", "l2", "l3"])));
        Ok(())
    }

    #[test]
    fn follow_links_absolute() -> io::Result<()> {
        for outside in ["../", "../../../"] {
            let tmp = tempfile::tempdir()?;
            let root = tmp.path();
            std::fs::create_dir(root.join("dir"))?;
            symlink("/foo/bar/baz", root.join("dir/l1"))?;
            std::fs::create_dir(root.join("foo"))?;
            symlink(outside, root.join("foo/bar"))?;
            std::fs::write(root.join("baz"), "")?;
            let out = super::follow_links(root, &strings(&["dir/l1"]))?;
            assert_eq!(out, Some(strings(&["baz", "dir/l1", "foo/bar"])));
        }
        Ok(())
    }

    #[test]
    fn follow_links_not_exists() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        let out = super::follow_links(root, &strings(&["foo/bar/baz", "bar/baz"]))?;
        assert_eq!(out, Some(strings(&["bar/baz", "foo/bar/baz"])));
        assert_eq!(super::follow_links(root, &strings(&["."]))?, None);
        let out = super::follow_links(root, &strings(&["f*/foo/t*"]))?;
        assert_eq!(out, Some(strings(&["f*/foo/t*"])));
        Ok(())
    }

    #[test]
    fn follow_links_normalized() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        let out = super::follow_links(root, &strings(&["foo/bar/baz", "foo/bar"]))?;
        assert_eq!(out, Some(strings(&["foo/bar"])));

        std::fs::create_dir(root.join("dir"))?;
        symlink("/foo", root.join("dir/l1"))?;
        symlink("/", root.join("dir/l2"))?;
        std::fs::create_dir(root.join("foo"))?;
        std::fs::write(root.join("foo/bar"), "")?;
        let out = super::follow_links(root, &strings(&["dir/l1", "foo/bar"]))?;
        assert_eq!(out, Some(strings(&["dir/l1", "foo"])));
        let out = super::follow_links(root, &strings(&["dir/l2", "foo", "foo/bar"]))?;
        assert_eq!(out, None);
        Ok(())
    }

    #[test]
    fn follow_links_wildcard() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        std::fs::create_dir(root.join("dir"))?;
        std::fs::create_dir(root.join("foo"))?;
        symlink("/foo/bar1", root.join("dir/l1"))?;
        symlink("/foo/bar2", root.join("dir/l2"))?;
        symlink("/foo/bar3", root.join("dir/anotherlink"))?;
        symlink("../baz", root.join("foo/bar2"))?;
        std::fs::write(root.join("foo/bar1"), "")?;
        std::fs::write(root.join("foo/bar3"), "")?;
        std::fs::write(root.join("baz"), "")?;
        let out = super::follow_links(root, &strings(&["dir/l*"]))?;
        assert_eq!(
            out,
            Some(strings(&["baz", "dir/l*", "foo/bar1", "foo/bar2"]))
        );
        let out = super::follow_links(root, &strings(&["dir"]))?;
        assert_eq!(out, Some(strings(&["dir"])));
        let out = super::follow_links(root, &strings(&["dir", "dir/*link"]))?;
        assert_eq!(out, Some(strings(&["dir", "foo/bar3"])));
        Ok(())
    }

    #[test]
    fn dedupe() {
        assert_eq!(
            dedupe_paths(&strings(&["a", "a/b", "ab", "b/c"])),
            Some(strings(&["a", "ab", "b/c"]))
        );
        assert_eq!(dedupe_paths(&strings(&["a", "."])), None);
    }
}
