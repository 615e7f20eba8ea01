//! Writing a file the user may already have, whole or not at all.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a temporary file in `path`'s directory (created if
/// missing), prefixed `prefix` so that a leftover is recognisable, and
/// renames it over `path`: readers see the old file or the new one, never a
/// part, and nothing else in the directory is touched. (`mybake.lock`,
/// `convert -o`, the input-key caches.)
pub fn write_atomic(path: &Path, prefix: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(prefix).tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_named_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "old").unwrap();
        std::fs::write(dir.path().join("other"), "keep").unwrap();
        write_atomic(&p, ".t-", b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("other")).unwrap(),
            "keep"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
        write_atomic(&dir.path().join("sub/b"), ".t-", b"x").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/b")).unwrap(),
            "x"
        );
    }
}
