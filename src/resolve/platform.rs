//! Platform strings: `os/arch[/variant]`.

use crate::diag::Diag;
use crate::source::Span;

/// `platforms "local"`: the builder's native platform.
pub const LOCAL: &str = "local";

const OS: &[&str] = &[
    "linux",
    "windows",
    "darwin",
    "freebsd",
    "netbsd",
    "openbsd",
    "solaris",
    "illumos",
    "aix",
    "android",
    "ios",
    "js",
    "wasip1",
    "plan9",
    "dragonfly",
];
const ARCH: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips", "mipsle",
    "mips64", "mips64le", "loong64", "wasm",
];
const ALIASES: &[(&str, &str)] = &[
    ("x86_64", "amd64"),
    ("x86-64", "amd64"),
    ("aarch64", "arm64"),
    ("armhf", "arm/v7"),
    ("armel", "arm/v6"),
    ("i386", "386"),
    ("i686", "386"),
    ("x86", "386"),
    ("ppc64el", "ppc64le"),
];

/// Check a platform string; the error explains and suggests.
pub fn validate(p: &str, span: Span) -> Result<(), Diag> {
    // `local`: the builder's native platform (bake's spelling), kept as
    // written by `print` and replaced by the native platform in `plan`.
    if p == LOCAL {
        return Ok(());
    }
    // `os/arch[/variant]`: the first three parts and how many there are.
    let mut parts = [""; 3];
    let mut count = 0;
    for (k, s) in p.split('/').enumerate() {
        if let Some(slot) = parts.get_mut(k) {
            *slot = s;
        }
        count = k + 1;
    }
    let bad = |why: String, help: Option<String>| {
        Diag::new(
            "mybake::resolve::bad-platform",
            format!("invalid platform `{p}`: {why}"),
        )
        .label(span, "invalid platform")
        .help_opt(help.or_else(|| {
            Some(
                "write `os/arch[/variant]`, e.g. `linux/amd64`, `linux/arm64`, `linux/arm/v7`"
                    .into(),
            )
        }))
    };
    if !(2..=3).contains(&count) || parts[..count].iter().any(|s| s.is_empty()) {
        return Err(bad("expected `os/arch` or `os/arch/variant`".into(), None));
    }
    if !OS.contains(&parts[0]) {
        return Err(bad(
            format!("unknown OS `{}`", parts[0]),
            crate::diag::suggest(parts[0], OS.iter().copied()),
        ));
    }
    if !ARCH.contains(&parts[1]) {
        let alias = ALIASES
            .iter()
            .find(|(a, _)| *a == parts[1])
            .map(|(_, to)| format!("did you mean `{}/{to}`?", parts[0]));
        return Err(bad(
            format!("unknown architecture `{}`", parts[1]),
            alias.or_else(|| crate::diag::suggest(parts[1], ARCH.iter().copied())),
        ));
    }
    if let Some(v) = parts.get(2).filter(|_| count == 3) {
        if !v
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.')
        {
            return Err(bad(format!("invalid variant `{v}`"), None));
        }
    }
    Ok(())
}

/// The platform of this machine, as BuildKit names it.
pub fn local() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "arm" => "arm/v7",
        other => other,
    };
    format!("linux/{arch}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_platforms() {
        for p in [
            "linux/amd64",
            "linux/arm64",
            "linux/arm/v7",
            "linux/arm64/v8",
            "windows/amd64",
            "linux/riscv64",
        ] {
            assert!(validate(p, Span::NONE).is_ok(), "{p}");
        }
    }

    #[test]
    fn rejects_and_suggests() {
        let e = validate("linux/aarch64", Span::NONE).unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `linux/arm64`?"));
        assert!(validate("linux", Span::NONE).is_err());
        assert!(validate("linx/amd64", Span::NONE)
            .unwrap_err()
            .help
            .unwrap()
            .contains("linux"));
        assert!(validate("linux/amd64/", Span::NONE).is_err());
        assert!(validate("linux/arm/V7", Span::NONE).is_err());
    }
}
