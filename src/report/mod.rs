//! Stage 6 — `report`: render stage outputs for people and tools. Nothing
//! else prints; these functions return strings.

pub mod list;
pub mod plan;
pub mod print;
pub mod progress;
pub mod tty;

use std::path::{Path, PathBuf};

/// `path` relative to `base`, normalised (`.` for `base` itself).
pub fn relative(path: &Path, base: &Path) -> String {
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
}
