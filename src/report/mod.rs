//! Stage 6 — `report`: render stage outputs for people and tools. Nothing
//! else prints; these functions return strings.

pub mod list;
pub mod plan;
pub mod print;
pub mod progress;
pub mod tty;

use std::path::{Component, Path, PathBuf};

/// `path` relative to `base`, normalised (`.` for `base` itself).
pub fn relative(path: &Path, base: &Path) -> String {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c.as_os_str());
    }
    let s = out.to_string_lossy().into_owned();
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
