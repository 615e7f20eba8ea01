//! Image references: the one parser, used by resolve (checking every
//! reference before anything is built), exec and publish.
//!
//! The grammar is Docker's (distribution/reference), written out by hand so
//! each error can say which part is wrong and point at it:
//!
//! ```text
//! reference := name [ ":" tag ] [ "@" digest ]
//! name      := [ host [ ":" port ] "/" ] path          ; path <= 255 chars
//! host      := label ( "." label )* | "[" ipv6 "]"      ; label: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path      := component ( "/" component )*
//! component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag       := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest    := algorithm ":" hex                         ; sha256/384/512, lowercase hex
//! ```
//!
//! The first path part is the registry host when it contains `.` or `:` or
//! is `localhost` (Docker's rule); otherwise the name is on Docker Hub
//! (`docker.io`, and a one-part path is under `library/`). One deviation:
//! Docker also takes an upper-case first part without `.`/`:` to be a host
//! (`Foo/bar` would be pushed to a registry called `Foo`); here it is a
//! repository name that must be lowercase, which is what was meant.

use std::borrow::Cow;
use std::ops::Range;

/// Most characters of a repository path (after Docker Hub's `library/`).
pub const MAX_PATH: usize = 255;
/// Most characters of a tag.
pub const MAX_TAG: usize = 128;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const OFFICIAL: &str = "library/";

/// A well-formed reference, borrowing its parts from the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference<'a> {
    /// The registry host (and port) as written, if any.
    pub domain: Option<&'a str>,
    /// The repository path as written.
    pub path: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl Reference<'_> {
    /// The registry: the host written, or Docker Hub.
    pub fn registry(&self) -> &str {
        match self.domain {
            None | Some(DOCKER_HUB_LEGACY) => DOCKER_HUB,
            Some(d) => d,
        }
    }

    /// The repository path on its registry (`alpine` is `library/alpine` on
    /// Docker Hub).
    pub fn repository(&self) -> Cow<'_, str> {
        if self.registry() == DOCKER_HUB && !self.path.contains('/') {
            Cow::Owned(format!("{OFFICIAL}{}", self.path))
        } else {
            Cow::Borrowed(self.path)
        }
    }

    /// The name as written, without tag or digest (`host/path` or `path`).
    pub fn name(&self) -> String {
        match self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.to_string(),
        }
    }

    /// `registry/repository`, as Docker normalises it.
    pub fn normalized_name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }
}

/// Why a text is not a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What is wrong, naming the part (`invalid tag `a b`: ...`).
    pub message: String,
    /// Bytes of the reference text at fault.
    pub at: Range<usize>,
    /// Short label for the span.
    pub label: &'static str,
    pub help: Option<String>,
}

impl Invalid {
    pub(crate) fn new(message: String, at: Range<usize>, label: &'static str) -> Invalid {
        Invalid {
            message,
            at,
            label,
            help: None,
        }
    }
    pub(crate) fn help(mut self, help: impl Into<String>) -> Invalid {
        self.help = Some(help.into());
        self
    }
}

/// How a character is named in a message.
fn describe(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\t' => "a tab".into(),
        c if c.is_control() || c.is_whitespace() => format!("{c:?}"),
        c => format!("`{c}`"),
    }
}

/// Parse `s` as `name[:tag][@digest]`.
pub fn parse(s: &str) -> Result<Reference<'_>, Invalid> {
    if s.is_empty() {
        return Err(Invalid::new("empty image reference".into(), 0..0, "empty"));
    }
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Invalid::new(
            format!("`{s}` is a 64-character hexadecimal image ID, not a repository name"),
            0..s.len(),
            "an image ID",
        ));
    }
    // The digest follows the first `@`; the tag, the first `:` after the
    // last `/` (a `:` before it is the registry's port).
    let (name_tag, digest) = match s.find('@') {
        Some(i) => (&s[..i], Some((i + 1, &s[i + 1..]))),
        None => (s, None),
    };
    let after_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[after_slash..].find(':') {
        Some(i) => {
            let i = after_slash + i;
            (&name_tag[..i], Some((i + 1, &name_tag[i + 1..])))
        }
        None => (name_tag, None),
    };
    if name.is_empty() {
        let sep = if tag.is_some() { ':' } else { '@' };
        return Err(Invalid::new(
            format!("no repository name before `{sep}`"),
            0..1,
            "no name",
        ));
    }
    let (domain, path, path_at) = split_domain(name);
    if let Some(d) = domain {
        check_domain(d)?;
    }
    check_path(path, path_at)?;
    let r = Reference {
        domain,
        path,
        tag: tag.map(|t| t.1),
        digest: digest.map(|d| d.1),
    };
    let long = path.len()
        + if path.contains('/') {
            0
        } else {
            OFFICIAL.len()
        }
        > MAX_PATH;
    if long && r.repository().len() > MAX_PATH {
        let repo = r.repository();
        return Err(Invalid::new(
            format!(
                "repository name `{repo}` is {} characters long, more than {MAX_PATH}",
                repo.len()
            ),
            path_at..path_at + path.len(),
            "too long",
        ));
    }
    if let Some((at, t)) = tag {
        check_tag(t, at)?;
    }
    if let Some((at, d)) = digest {
        check_digest(d, at)?;
    }
    Ok(r)
}

/// (host, path, offset of the path).
fn split_domain(name: &str) -> (Option<&str>, &str, usize) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
        {
            (Some(first), rest, first.len() + 1)
        }
        _ => (None, name, 0),
    }
}

/// Whether `d` is `host[:port]` with a DNS-like host: one pass over its
/// bytes (most hosts are; [`check_domain`] then looks closer).
fn is_dns_domain(d: &str) -> bool {
    let (host, port) = d.split_once(':').unwrap_or((d, "0"));
    // Label length so far, and the byte before.
    let (mut len, mut prev) = (0usize, b'.');
    for &c in host.as_bytes() {
        match c {
            b'.' if len > 0 && prev != b'-' => len = 0,
            b'-' if len > 0 => len += 1,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => len += 1,
            _ => return false,
        }
        prev = c;
    }
    len > 0 && prev != b'-' && !port.is_empty() && port.bytes().all(|c| c.is_ascii_digit())
}

fn check_domain(d: &str) -> Result<(), Invalid> {
    match is_dns_domain(d) {
        true => Ok(()),
        false => domain_problem(d).map_or(Ok(()), Err),
    }
}

/// What is wrong with registry host `d`, if anything.
fn domain_problem(d: &str) -> Option<Invalid> {
    let bad = |why: String, at: Range<usize>| {
        Invalid::new(
            format!("invalid registry host `{d}`: {why}"),
            at,
            "invalid host",
        )
        .help("a registry is `host[:port]`: DNS labels of letters, digits and `-` separated by `.`, an IPv4 address or `[IPv6]`")
    };
    let (host, port) = if d.starts_with('[') {
        let Some(close) = d.find(']') else {
            return Some(bad("`[` without `]`".into(), 0..d.len()));
        };
        let inner = &d[1..close];
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Some(bad(
                format!("`{inner}` is not an IPv6 address"),
                0..close + 1,
            ));
        }
        match &d[close + 1..] {
            "" => (&d[..close + 1], None),
            rest => match rest.strip_prefix(':') {
                Some(p) => (&d[..close + 1], Some((close + 2, p))),
                None => return Some(bad(format!("unexpected `{rest}`"), close + 1..d.len())),
            },
        }
    } else {
        let (host, port) = match d.split_once(':') {
            Some((h, p)) => (h, Some((h.len() + 1, p))),
            None => (d, None),
        };
        let mut at = 0;
        for label in host.split('.') {
            let span = at..at + label.len();
            if label.is_empty() {
                return Some(bad("empty part between dots".into(), at..at));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                return Some(bad(
                    format!("{} is not allowed in a host name", describe(c)),
                    span,
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Some(bad(format!("`{label}` starts or ends with `-`"), span));
            }
            at += label.len() + 1;
        }
        (host, port)
    };
    if host.is_empty() {
        return Some(bad("no host name".into(), 0..d.len()));
    }
    if let Some((at, p)) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Some(bad(format!("port `{p}` is not a number"), at..at + p.len()));
        }
    }
    None
}

/// Whether `path` is a repository path: one pass over its bytes (most
/// paths are; [`check_path`] then says what is wrong with the others).
fn is_path(path: &str) -> bool {
    // After a letter or digit; in a separator run: its byte and length.
    let mut after_alnum = false;
    let mut run = (0u8, 0usize);
    for &c in path.as_bytes() {
        match c {
            b'a'..=b'z' | b'0'..=b'9' => {
                after_alnum = true;
                run.1 = 0;
            }
            b'.' | b'_' | b'-' if run.1 == 0 => {
                if !after_alnum {
                    return false;
                }
                run = (c, 1);
            }
            b'_' | b'-' if c == run.0 && (c == b'-' || run.1 < 2) => run.1 += 1,
            b'/' if after_alnum && run.1 == 0 => after_alnum = false,
            _ => return false,
        }
    }
    after_alnum && run.1 == 0
}

fn check_path(path: &str, base: usize) -> Result<(), Invalid> {
    match is_path(path) {
        true => Ok(()),
        false => path_problem(path, base).map_or(Ok(()), Err),
    }
}

/// What is wrong with repository path `path` (at `base`), if anything.
fn path_problem(path: &str, base: usize) -> Option<Invalid> {
    let whole = base..base + path.len();
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(
            Invalid::new(
                format!("repository name must be lowercase: `{path}`"),
                whole,
                "upper-case letters",
            )
            .help(format!("write `{}`", path.to_ascii_lowercase())),
        );
    }
    let bad = |why: String, at: Range<usize>, label| {
        Invalid::new(format!("invalid repository name `{path}`: {why}"), at, label).help(
            "a repository name is `/`-separated parts of `a-z` and `0-9`, joined inside a part by one `.`, one or two `_`, or `-`",
        )
    };
    let mut at = base;
    for part in path.split('/') {
        let span = at..at + part.len();
        if part.is_empty() {
            return Some(bad("empty part between `/`".into(), at..at, "empty"));
        }
        if let Some((i, c)) = part
            .char_indices()
            .find(|(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
        {
            return Some(bad(
                format!("{} is not allowed", describe(c)),
                at + i..at + i + c.len_utf8(),
                "not allowed",
            ));
        }
        let b = part.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return Some(bad(
                format!("`{part}` must start and end with a letter or digit"),
                span,
                "bad start or end",
            ));
        }
        // Separators: runs of `.`, `_`, `-` between letters and digits.
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &part[start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
                return Some(bad(
                    format!("`{sep}` is not a separator (one `.`, one or two `_`, or `-`s)"),
                    at + start..at + i,
                    "bad separator",
                ));
            }
        }
        at += part.len() + 1;
    }
    None
}

/// Whether `t` is a tag: one pass over its bytes ([`check_tag`] then
/// says what is wrong with the others).
fn is_tag(t: &str) -> bool {
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    t.len() <= MAX_TAG
        && t.as_bytes().first().is_some_and(word)
        && t.bytes().all(|c| word(&c) || c == b'.' || c == b'-')
}

fn check_tag(t: &str, base: usize) -> Result<(), Invalid> {
    match is_tag(t) {
        true => Ok(()),
        false => tag_problem(t, base).map_or(Ok(()), Err),
    }
}

/// What is wrong with tag `t` (at `base`), if anything.
fn tag_problem(t: &str, base: usize) -> Option<Invalid> {
    let bad = |why: String, at: Range<usize>, label| {
        Invalid::new(format!("invalid tag `{t}`: {why}"), at, label).help(
            "a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
        )
    };
    if t.is_empty() {
        return Some(
            Invalid::new("empty tag after `:`".into(), base - 1..base, "empty tag")
                .help("write a tag after `:` or leave the `:` out (`latest`)"),
        );
    }
    if let Some((i, c)) = t
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Some(bad(
            format!("{} is not allowed", describe(c)),
            base + i..base + i + c.len_utf8(),
            "not allowed",
        ));
    }
    if t.starts_with(['.', '-']) {
        return Some(bad(
            "must start with a letter, digit or `_`".into(),
            base..base + 1,
            "bad start",
        ));
    }
    if t.len() > MAX_TAG {
        return Some(bad(
            format!("{} characters long, more than {MAX_TAG}", t.len()),
            base..base + t.len(),
            "too long",
        ));
    }
    None
}

fn check_digest(d: &str, base: usize) -> Result<(), Invalid> {
    let whole = base..base + d.len();
    let bad = |why: String, at: Range<usize>, label| {
        Invalid::new(format!("invalid digest `{d}`: {why}"), at, label)
            .help("a digest is `sha256:` and 64 lowercase hexadecimal digits (or sha384, sha512)")
    };
    let Some((algo, hex)) = d.split_once(':') else {
        return Err(bad(
            "expected `algorithm:hex`".into(),
            whole,
            "not a digest",
        ));
    };
    let want = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(bad(
                format!("unsupported algorithm `{algo}`"),
                base..base + algo.len(),
                "unsupported",
            ))
        }
    };
    let hex_at = base + algo.len() + 1;
    if let Some((i, c)) = hex
        .char_indices()
        .find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
    {
        return Err(bad(
            format!("{} is not a lowercase hexadecimal digit", describe(c)),
            hex_at + i..hex_at + i + c.len_utf8(),
            "not hexadecimal",
        ));
    }
    if hex.len() != want {
        return Err(bad(
            format!(
                "{algo} takes {want} hexadecimal digits, found {}",
                hex.len()
            ),
            hex_at..hex_at + hex.len(),
            "wrong length",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn valid_references() {
        let long_tag = "t".repeat(MAX_TAG);
        // (text, host, path, tag, has a digest)
        type Case<'a> = (String, Option<&'a str>, &'a str, Option<&'a str>, bool);
        let cases: Vec<Case> = vec![
            ("alpine".into(), None, "alpine", None, false),
            ("alpine:3.19".into(), None, "alpine", Some("3.19"), false),
            (
                "user/app:cache".into(),
                None,
                "user/app",
                Some("cache"),
                false,
            ),
            (
                "localhost:5000/x:y".into(),
                Some("localhost:5000"),
                "x",
                Some("y"),
                false,
            ),
            ("localhost/x".into(), Some("localhost"), "x", None, false),
            (
                format!("127.0.0.1:5000/a/b@{SHA}"),
                Some("127.0.0.1:5000"),
                "a/b",
                None,
                true,
            ),
            (
                format!("r.io/a:v1@{SHA}"),
                Some("r.io"),
                "a",
                Some("v1"),
                true,
            ),
            ("[::1]:5000/a".into(), Some("[::1]:5000"), "a", None, false),
            (
                "Registry.Example.COM/a".into(),
                Some("Registry.Example.COM"),
                "a",
                None,
                false,
            ),
            (
                "ghcr.io/o/a.b_c__d---e:V_1.0-rc".into(),
                Some("ghcr.io"),
                "o/a.b_c__d---e",
                Some("V_1.0-rc"),
                false,
            ),
            (
                "test.com:5000".into(),
                None,
                "test.com",
                Some("5000"),
                false,
            ),
            ("x:_".into(), None, "x", Some("_"), false),
            (
                format!("x:{long_tag}"),
                None,
                "x",
                Some(long_tag.as_str()),
                false,
            ),
            ("a/b/c/d".into(), None, "a/b/c/d", None, false),
        ];
        for (text, domain, path, tag, digest) in cases {
            let r = parse(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(r.domain, domain, "{text}");
            assert_eq!(r.path, path, "{text}");
            assert_eq!(r.tag, tag, "{text}");
            assert_eq!(r.digest.is_some(), digest, "{text}");
        }
    }

    #[test]
    fn normalisation() {
        let n = |s: &str| parse(s).unwrap().normalized_name();
        assert_eq!(n("alpine:3"), "docker.io/library/alpine");
        assert_eq!(n("docker.io/alpine"), "docker.io/library/alpine");
        assert_eq!(n("index.docker.io/alpine"), "docker.io/library/alpine");
        assert_eq!(n("user/app"), "docker.io/user/app");
        assert_eq!(n("localhost:5000/x:y"), "localhost:5000/x");
        assert_eq!(n("localhost/x"), "localhost/x");
    }

    #[test]
    fn invalid_references() {
        let long_tag = "t".repeat(MAX_TAG + 1);
        let long_path = format!("a/{}", "b".repeat(MAX_PATH));
        let hub_limit = "b".repeat(MAX_PATH - OFFICIAL.len() + 1);
        // (text, message contains, span of the fault)
        let cases: Vec<(String, &str, Range<usize>)> = vec![
            ("".into(), "empty image reference", 0..0),
            (
                "Upper/x".into(),
                "repository name must be lowercase: `Upper/x`",
                0..7,
            ),
            (
                "Foo/bar:1".into(),
                "repository name must be lowercase: `Foo/bar`",
                0..7,
            ),
            (
                "r.io/App:1".into(),
                "repository name must be lowercase: `App`",
                5..8,
            ),
            (
                "x:tag with space".into(),
                "invalid tag `tag with space`: a space is not allowed",
                5..6,
            ),
            ("x:".into(), "empty tag after `:`", 1..2),
            (
                "-x".into(),
                "invalid repository name `-x`: `-x` must start and end",
                0..2,
            ),
            (
                "x-".into(),
                "must start and end with a letter or digit",
                0..2,
            ),
            (
                format!("x:{long_tag}"),
                "129 characters long, more than 128",
                2..131,
            ),
            (
                "x:.tag".into(),
                "invalid tag `.tag`: must start with a letter, digit or `_`",
                2..3,
            ),
            (
                "x:a:b".into(),
                "invalid tag `a:b`: `:` is not allowed",
                3..4,
            ),
            (
                "a b".into(),
                "invalid repository name `a b`: a space is not allowed",
                1..2,
            ),
            (" x".into(), "a space is not allowed", 0..1),
            ("x\t".into(), "a tab is not allowed", 1..2),
            ("a//b".into(), "empty part between `/`", 2..2),
            ("a/".into(), "empty part between `/`", 2..2),
            ("a..b".into(), "`..` is not a separator", 1..3),
            ("a___b".into(), "`___` is not a separator", 1..4),
            ("a.-b".into(), "`.-` is not a separator", 1..3),
            ("a$b:1".into(), "`$` is not allowed", 1..2),
            (
                "my_reg.io/x".into(),
                "invalid registry host `my_reg.io`: `_` is not allowed",
                0..6,
            ),
            ("-r.io/x".into(), "`-r` starts or ends with `-`", 0..2),
            ("r..io/x".into(), "empty part between dots", 2..2),
            ("r.io:50a/x".into(), "port `50a` is not a number", 5..8),
            ("localhost:/x".into(), "port `` is not a number", 10..10),
            ("[zz]:5000/x".into(), "`zz` is not an IPv6 address", 0..4),
            (":tag".into(), "no repository name before `:`", 0..1),
            (format!("@{SHA}"), "no repository name before `@`", 0..1),
            (
                "x@sha256:abc".into(),
                "sha256 takes 64 hexadecimal digits, found 3",
                9..12,
            ),
            (
                "x@md5:0123456789abcdef0123456789abcdef".into(),
                "unsupported algorithm `md5`",
                2..5,
            ),
            (
                format!("x@{}", SHA.to_uppercase().replace("SHA", "sha")),
                "`A` is not a lowercase hexadecimal digit",
                19..20,
            ),
            ("x@latest".into(), "expected `algorithm:hex`", 2..8),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
                "64-character hexadecimal image ID",
                0..64,
            ),
            (
                long_path.clone(),
                "is 257 characters long, more than 255",
                0..long_path.len(),
            ),
            (
                hub_limit.clone(),
                "repository name `library/",
                0..hub_limit.len(),
            ),
            ("x:y\u{e9}".into(), "`\u{e9}` is not allowed", 3..5),
        ];
        for (text, want, at) in cases {
            let e = parse(&text).expect_err(&text);
            assert!(
                e.message.contains(want),
                "{text:?}: {:?} lacks {want:?}",
                e.message
            );
            assert_eq!(e.at, at, "{text:?}: {e:?}");
            assert!(
                e.at.end <= text.len() && text.is_char_boundary(e.at.start),
                "{text:?}"
            );
        }
        // The limit is on the path: 255 characters pass, Hub's `library/` counts.
        assert!(parse(&format!("a/{}", "b".repeat(MAX_PATH - 2))).is_ok());
        assert!(parse(&"b".repeat(MAX_PATH - OFFICIAL.len())).is_ok());
    }

    /// Every string of up to `n` of these pieces.
    fn strings(pieces: &[&str], n: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..n {
            last = last
                .iter()
                .flat_map(|s| pieces.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn one_pass_checks_agree_with_the_detailed_ones() {
        let mut valid = 0;
        for p in strings(&["a", "0", "A", ".", "_", "-", "/", " "], 5) {
            assert_eq!(is_path(&p), path_problem(&p, 0).is_none(), "{p:?}");
            valid += usize::from(is_path(&p));
        }
        assert!(valid > 100, "{valid}");
        for t in strings(&["a", "Z", "0", "_", ".", "-", ":", " "], 4) {
            assert_eq!(is_tag(&t), tag_problem(&t, 1).is_none(), "{t:?}");
        }
        for d in strings(&["a", "Z", "0", "-", ".", ":", "_", "/"], 5) {
            assert_eq!(is_dns_domain(&d), domain_problem(&d).is_none(), "{d:?}");
        }
        let long = "a".repeat(MAX_TAG + 1);
        assert!(!is_tag(&long) && tag_problem(&long, 1).is_some());
    }
}
