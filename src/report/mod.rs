//! Stage 6 — `report`: render stage outputs for people and tools. Nothing
//! else prints: [`reporter`] writes a build's live progress (and the signal
//! handler's lines); everything else here returns strings, which `cli`
//! writes at the end of a command.

pub mod build;
pub mod index;
pub mod list;
pub mod plan;
pub mod print;
pub mod progress;
pub mod reporter;
pub mod tty;

use std::path::{Path, PathBuf};

/// `path` relative to `base`, normalised (`.` for `base` itself).
pub fn relative(path: &Path, base: &Path) -> String {
    // The usual case, without taking both paths apart: `path` is `base`,
    // or `base` + `/` + plain names.
    if let (Some(p), Some(b)) = (path.to_str(), base.to_str()) {
        if p == b {
            return ".".into();
        }
        if let Some(rest) = p.strip_prefix(b).and_then(|r| r.strip_prefix('/')) {
            if !b.is_empty()
                && !b.ends_with('/')
                && !rest
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..")
            {
                return rest.to_string();
            }
        }
    }
    relative_by_components(path, base)
}

/// [`relative`] the long way: component by component.
fn relative_by_components(path: &Path, base: &Path) -> String {
    let mut p = path.components().peekable();
    let mut b = base.components().peekable();
    while let (Some(x), Some(y)) = (p.peek(), b.peek()) {
        if x != y {
            break;
        }
        p.next();
        b.next();
    }
    let mut out = PathBuf::with_capacity(path.as_os_str().len());
    for _ in b {
        out.push("..");
    }
    for c in p {
        out.push(c.as_os_str());
    }
    let s = out
        .into_os_string()
        .into_string()
        .unwrap_or_else(|s| s.to_string_lossy().into_owned());
    if s.is_empty() {
        ".".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative(Path::new("/w"), Path::new("/w")), ".");
        assert_eq!(
            relative(Path::new("/w/sub/api"), Path::new("/w")),
            "sub/api"
        );
        assert_eq!(relative(Path::new("/x/y"), Path::new("/w/z")), "../../x/y");
    }

    #[test]
    fn shortcut_agrees_with_components() {
        let paths = [
            "/", "/w", "/w/", "/w/a", "/w/a/", "/w/a/b", "/wa/b", "/w//a", "/w/./a", "/w/../a",
            "/w/a/.", "/w/a/..", "/x/y", "w/a", "", "/w/a b/c",
        ];
        for p in paths {
            for b in paths {
                assert_eq!(
                    relative(Path::new(p), Path::new(b)),
                    relative_by_components(Path::new(p), Path::new(b)),
                    "relative({p:?}, {b:?})"
                );
            }
        }
    }
}
