//! Just enough of a Dockerfile parser to find the external images a build
//! uses: stages, `ARG`s before the first `FROM` (with `--build-arg`
//! overrides), `FROM [--platform=…] IMAGE [AS name]`, `COPY --from=IMAGE`
//! and `RUN --mount=…,from=IMAGE`, with BuildKit's variable substitution,
//! line continuations, comments, heredocs and parser directives.
//!
//! Self-contained (std only): the lock file (`mybake lock`) and the input
//! keys of the build both read it.
//!
//! Semantics follow BuildKit's dockerfile frontend:
//! - an `ARG` before the first `FROM` is a meta arg; its default may use
//!   earlier meta args; a build arg overrides it only when declared (an
//!   undeclared build arg is not visible to `FROM`);
//! - `FROM` of an earlier stage's name (case-insensitive) and `FROM scratch`
//!   are not external;
//! - only the stages the target stage needs are walked (the last stage when
//!   no target is given), as BuildKit prunes the others;
//! - a `# syntax=IMAGE` parser directive names the frontend image BuildKit
//!   pulls to parse the file: it is reported as an external image of kind
//!   [`ImageKind::Syntax`] (callers decide whether to pin it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How an external image is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImageKind {
    /// `FROM IMAGE`.
    From,
    /// `COPY --from=IMAGE` or `RUN --mount=from=IMAGE`.
    CopyFrom,
    /// The `# syntax=IMAGE` directive (the frontend image).
    Syntax,
}

/// One external image reference, after substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalImage {
    /// The image reference as written after substitution (`busybox`,
    /// `localhost:5000/busybox:latest`, `alpine@sha256:…`).
    pub image: String,
    /// `--platform=` of the `FROM`, after substitution of the meta args
    /// (`$BUILDPLATFORM` stays unresolved unless the caller passes it).
    pub platform: Option<String>,
    /// The stage it starts (`FROM … AS name`), if named.
    pub stage: Option<String>,
    pub kind: ImageKind,
    /// 1-based line of the instruction.
    pub line: usize,
}

/// A parse error with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dockerfile line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for DockerfileError {}

/// One logical instruction (continuations joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Upper-cased keyword (`FROM`, `ARG`, …).
    pub keyword: String,
    /// The rest of the line, continuations joined, trimmed.
    pub rest: String,
    /// 1-based line where the instruction starts.
    pub line: usize,
}

/// A parsed Dockerfile: directives, instructions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Parser directives (lower-cased keys): `syntax`, `escape`, `check`.
    pub directives: BTreeMap<String, (String, usize)>,
    pub instructions: Vec<Instruction>,
}

/// Split a Dockerfile into directives and logical instructions.
pub fn parse(text: &str) -> Result<Parsed, DockerfileError> {
    let mut out = Parsed::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    // Parser directives: `# key=value` lines at the very top.
    while i < lines.len() {
        let Some(body) = lines[i].trim().strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = body.split_once('=') else {
            break;
        };
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            break;
        }
        let key = k.to_ascii_lowercase();
        if out.directives.contains_key(&key) {
            return Err(DockerfileError {
                line: i + 1,
                message: format!("only one `{key}` parser directive can be used"),
            });
        }
        out.directives.insert(key, (v.trim().to_string(), i + 1));
        i += 1;
    }
    let escape = match out.directives.get("escape") {
        None => '\\',
        Some((v, line)) => match v.as_str() {
            "\\" => '\\',
            "`" => '`',
            _ => {
                return Err(DockerfileError {
                    line: *line,
                    message: format!("invalid escape token `{v}`: must be ` or \\"),
                })
            }
        },
    };
    while i < lines.len() {
        let first = lines[i].trim();
        if first.is_empty() || first.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let mut joined = String::new();
        loop {
            let raw = lines[i].trim_end();
            i += 1;
            match raw.strip_suffix(escape) {
                Some(head) => {
                    joined.push_str(head);
                    // Skip comment and empty lines inside a continuation.
                    while i < lines.len() {
                        let t = lines[i].trim();
                        if t.is_empty() || t.starts_with('#') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    if i >= lines.len() {
                        break;
                    }
                }
                _ => {
                    joined.push_str(raw);
                    break;
                }
            }
        }
        let joined = joined.trim();
        let (kw, rest) = match joined.find(char::is_whitespace) {
            Some(p) => (&joined[..p], joined[p..].trim()),
            None => (joined, ""),
        };
        let keyword = kw.to_ascii_uppercase();
        // Heredocs (`RUN <<EOF`, `COPY <<EOF /f`): skip their bodies.
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (word, strip_tabs) in heredoc_words(rest) {
                while i < lines.len() {
                    let l = if strip_tabs {
                        lines[i].trim_start_matches('\t')
                    } else {
                        lines[i]
                    };
                    i += 1;
                    if l.trim_end_matches('\r') == word {
                        break;
                    }
                }
            }
        }
        out.instructions.push(Instruction {
            keyword,
            rest: rest.to_string(),
            line: start + 1,
        });
    }
    Ok(out)
}

/// The heredoc delimiters opened on an instruction line, in order.
fn heredoc_words(rest: &str) -> Vec<(String, bool)> {
    let mut words = Vec::new();
    let mut s = rest;
    while let Some(p) = s.find("<<") {
        s = &s[p + 2..];
        let strip = s.starts_with('-');
        if strip {
            s = &s[1..];
        }
        let (quoted, body) = match s.chars().next() {
            Some(q @ ('"' | '\'')) => (Some(q), &s[1..]),
            _ => (None, s),
        };
        let end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        if end == 0 {
            continue;
        }
        let word = &body[..end];
        if let Some(q) = quoted {
            if !body[end..].starts_with(q) {
                continue;
            }
        }
        words.push((word.to_string(), strip));
        s = &body[end..];
    }
    words
}

/// Expand `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
/// `${VAR+word}` with `vars`; unknown variables expand to the empty string,
/// as in BuildKit. `\$` is a literal `$` (with the default escape).
pub fn expand(word: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'$') => {
                chars.next();
                out.push('$');
            }
            '$' => match chars.peek() {
                Some('{') => {
                    chars.next();
                    let mut body = String::new();
                    let mut depth = 1;
                    loop {
                        match chars.next() {
                            None => return Err(format!("missing `}}` in `{word}`")),
                            Some('{') => {
                                depth += 1;
                                body.push('{');
                            }
                            Some('}') => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                                body.push('}');
                            }
                            Some(c) => body.push(c),
                        }
                    }
                    let name_end = body
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(body.len());
                    let (name, op) = body.split_at(name_end);
                    if name.is_empty() {
                        return Err(format!("bad substitution `${{{body}}}`"));
                    }
                    let val = vars.get(name);
                    let (colon, op) = match op.strip_prefix(':') {
                        Some(o) => (true, o),
                        None => (false, op),
                    };
                    let set = match val {
                        Some(v) => !(colon && v.is_empty()),
                        None => false,
                    };
                    if op.is_empty() && !colon {
                        out.push_str(val.map(String::as_str).unwrap_or(""));
                    } else if let Some(w) = op.strip_prefix('-') {
                        if set {
                            out.push_str(val.map(String::as_str).unwrap_or(""));
                        } else {
                            out.push_str(&expand(w, vars)?);
                        }
                    } else if let Some(w) = op.strip_prefix('+') {
                        if set {
                            out.push_str(&expand(w, vars)?);
                        }
                    } else if let Some(w) = op.strip_prefix('?') {
                        if !set {
                            return Err(format!("{name}: {}", expand(w, vars)?));
                        }
                        out.push_str(val.map(String::as_str).unwrap_or(""));
                    } else {
                        return Err(format!("unsupported modifier in `${{{body}}}`"));
                    }
                }
                Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                    let mut name = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_ascii_alphanumeric() || c == '_' {
                            name.push(c);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
                }
                _ => out.push('$'),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Split on whitespace, keeping quoted runs together and removing the quotes.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                any = true;
            }
            None if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            None => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct Stage {
    name: Option<String>,
    base: String,
    platform: Option<String>,
    line: usize,
    /// Names or indexes in `COPY --from=` / `RUN --mount=from=`, expanded.
    from_refs: Vec<(String, usize)>,
}

/// The external images the build of `target_stage` (the last stage when
/// `None`) uses, in the order they appear, without duplicates of the same
/// (image, kind, platform). `args` are the build args (`--build-arg`
/// values); they override the defaults of the `ARG`s declared before the
/// first `FROM`.
pub fn external_images(
    text: &str,
    args: &BTreeMap<String, String>,
    target_stage: Option<&str>,
) -> Result<Vec<ExternalImage>, DockerfileError> {
    let parsed = parse(text)?;
    let err = |line, message: String| DockerfileError { line, message };
    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in &parsed.instructions {
        match ins.keyword.as_str() {
            "ARG" if stages.is_empty() => {
                for w in words(&ins.rest) {
                    let (name, default) = match w.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (w.clone(), None),
                    };
                    if name.is_empty() {
                        return Err(err(ins.line, format!("ARG requires a name: `{w}`")));
                    }
                    let value = match args.get(&name) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => Some(expand(&d, &meta).map_err(|m| err(ins.line, m))?),
                            None => None,
                        },
                    };
                    if let Some(v) = value {
                        meta.insert(name, v);
                    }
                }
            }
            "FROM" => {
                let mut platform = None;
                let mut rest: Vec<String> = Vec::new();
                for w in words(&ins.rest) {
                    if rest.is_empty() {
                        if let Some(p) = w.strip_prefix("--platform=") {
                            platform = Some(expand(p, &meta).map_err(|m| err(ins.line, m))?);
                            continue;
                        }
                        if w.starts_with("--") {
                            continue;
                        }
                    }
                    rest.push(w);
                }
                let (base, name) = match rest.as_slice() {
                    [base] => (base, None),
                    [base, as_, name] if as_.eq_ignore_ascii_case("as") => {
                        (base, Some(name.to_ascii_lowercase()))
                    }
                    _ => {
                        return Err(err(
                            ins.line,
                            format!("FROM requires `IMAGE [AS name]`, found `{}`", ins.rest),
                        ))
                    }
                };
                let base = expand(base, &meta).map_err(|m| err(ins.line, m))?;
                if base.is_empty() {
                    return Err(err(
                        ins.line,
                        format!("base name `{}` expands to an empty string", rest[0]),
                    ));
                }
                stages.push(Stage {
                    name,
                    base,
                    platform,
                    line: ins.line,
                    from_refs: Vec::new(),
                });
            }
            "COPY" | "RUN" if !stages.is_empty() => {
                let mut refs = Vec::new();
                for w in words(&ins.rest) {
                    if !w.starts_with("--") {
                        break;
                    }
                    if let Some(f) = w.strip_prefix("--from=") {
                        refs.push(f.to_string());
                    } else if let Some(m) = w.strip_prefix("--mount=") {
                        for kv in m.split(',') {
                            if let Some(f) = kv.strip_prefix("from=") {
                                refs.push(f.to_string());
                            }
                        }
                    }
                }
                for r in refs {
                    let r = expand(&r, &meta).map_err(|m| err(ins.line, m))?;
                    stages.last_mut().unwrap().from_refs.push((r, ins.line));
                }
            }
            _ if stages.is_empty() && ins.keyword != "ARG" => {
                return Err(err(
                    ins.line,
                    format!("`{}` before the first FROM", ins.keyword),
                ));
            }
            _ => {}
        }
    }
    if stages.is_empty() {
        return Err(err(
            parsed.instructions.last().map_or(1, |i| i.line),
            "no FROM instruction".into(),
        ));
    }
    // Which stage does a reference at stage `at` name? Only earlier stages.
    let find = |name: &str, at: usize, by_index: bool| -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        if let Some(i) = stages[..at]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(i);
        }
        if by_index {
            if let Ok(i) = name.parse::<usize>() {
                if i < at {
                    return Some(i);
                }
            }
        }
        None
    };
    let target = match target_stage {
        None => stages.len() - 1,
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            stages
                .iter()
                .position(|s| s.name.as_deref() == Some(lower.as_str()))
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        stages.iter().filter_map(|s| s.name.as_deref()).collect();
                    err(
                        stages[0].line,
                        format!(
                            "target stage `{t}` not found (stages: {})",
                            if names.is_empty() {
                                "none named".to_string()
                            } else {
                                names.join(", ")
                            }
                        ),
                    )
                })?
        }
    };
    // Stages the target needs.
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(s) = todo.pop() {
        if !needed.insert(s) {
            continue;
        }
        if let Some(d) = find(&stages[s].base, s, false) {
            todo.push(d);
        }
        for (r, _) in &stages[s].from_refs {
            if let Some(d) = find(r, s, true) {
                todo.push(d);
            }
        }
    }
    let mut out: Vec<ExternalImage> = Vec::new();
    let mut push = |img: ExternalImage| {
        if !out
            .iter()
            .any(|o| o.image == img.image && o.kind == img.kind && o.platform == img.platform)
        {
            out.push(img);
        }
    };
    if let Some((syntax, line)) = parsed.directives.get("syntax") {
        push(ExternalImage {
            image: syntax.clone(),
            platform: None,
            stage: None,
            kind: ImageKind::Syntax,
            line: *line,
        });
    }
    for &s in &needed {
        let st = &stages[s];
        if find(&st.base, s, false).is_none() && st.base != "scratch" {
            push(ExternalImage {
                image: st.base.clone(),
                platform: st.platform.clone(),
                stage: st.name.clone(),
                kind: ImageKind::From,
                line: st.line,
            });
        }
        for (r, line) in &st.from_refs {
            if find(r, s, true).is_none() && r != "scratch" {
                push(ExternalImage {
                    image: r.clone(),
                    platform: None,
                    stage: st.name.clone(),
                    kind: ImageKind::CopyFrom,
                    line: *line,
                });
            }
        }
    }
    out.sort_by_key(|i| i.line);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn images(text: &str, a: &[(&str, &str)], target: Option<&str>) -> Vec<String> {
        external_images(text, &args(a), target)
            .unwrap()
            .into_iter()
            .map(|i| i.image)
            .collect()
    }

    #[test]
    fn simple_from() {
        assert_eq!(images("FROM busybox\nRUN true\n", &[], None), ["busybox"]);
    }

    #[test]
    fn meta_args_defaults_and_overrides() {
        let df =
            "ARG REG=localhost:5000\nARG IMG=${REG}/busybox\nARG TAG\nFROM $IMG:${TAG:-latest}\n";
        assert_eq!(images(df, &[], None), ["localhost:5000/busybox:latest"]);
        assert_eq!(
            images(df, &[("TAG", "1.36"), ("REG", "r.io")], None),
            ["r.io/busybox:1.36"]
        );
        // An override of an undeclared arg is not visible to FROM.
        assert_eq!(
            images("FROM busybox${X}\n", &[("X", ":2")], None),
            ["busybox"]
        );
    }

    #[test]
    fn several_args_on_one_line_and_quotes() {
        let df = "ARG A=\"alpine\" B='3.20'\nFROM ${A}:${B}\n";
        assert_eq!(images(df, &[], None), ["alpine:3.20"]);
    }

    #[test]
    fn stages_scratch_and_target() {
        let df = "\
FROM golang:1.22 AS build
RUN go build
FROM Build AS test
RUN go test
FROM scratch AS release
COPY --from=build /app /app
COPY --from=alpine:3 /etc/ssl /etc/ssl
FROM debian AS unused
";
        assert_eq!(
            images(df, &[], Some("release")),
            ["golang:1.22", "alpine:3"]
        );
        assert_eq!(images(df, &[], Some("test")), ["golang:1.22"]);
        assert_eq!(images(df, &[], None), ["debian"]);
        let e = external_images(df, &args(&[]), Some("nope")).unwrap_err();
        assert!(e.message.contains("build, test, release, unused"), "{e}");
    }

    #[test]
    fn platform_flag_and_stage_name() {
        let df = "ARG P=linux/amd64\nFROM --platform=$P busybox AS b\nFROM --platform=$BUILDPLATFORM tonistiigi/xx AS xx\nFROM b\nCOPY --from=xx / /\n";
        let got = external_images(df, &args(&[]), None).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].image, "busybox");
        assert_eq!(got[0].platform.as_deref(), Some("linux/amd64"));
        assert_eq!(got[0].stage.as_deref(), Some("b"));
        assert_eq!(got[1].image, "tonistiigi/xx");
        assert_eq!(got[1].platform.as_deref(), Some(""));
    }

    #[test]
    fn continuations_comments_and_directives() {
        let df = "# syntax=docker/dockerfile:1.7\n# escape=`\n\n# a comment\nFROM `\n  # inside\n\n  busybox `\n  AS base\nRUN echo \\\n";
        let got = external_images(df, &args(&[]), None).unwrap();
        assert_eq!(got[0].image, "docker/dockerfile:1.7");
        assert_eq!(got[0].kind, ImageKind::Syntax);
        assert_eq!(got[1].image, "busybox");
        assert_eq!(got[1].line, 5);
        assert_eq!(got[1].stage.as_deref(), Some("base"));
    }

    #[test]
    fn heredoc_bodies_are_not_instructions() {
        let df = "FROM busybox\nRUN <<EOF\nFROM evil\nEOF\nCOPY <<-\"X\" /f\n\tFROM evil2\n\tX\n";
        assert_eq!(images(df, &[], None), ["busybox"]);
    }

    #[test]
    fn mount_from_and_index_refs() {
        let df = "FROM busybox\nFROM alpine\nCOPY --from=0 / /\nRUN --mount=type=bind,from=node:20,target=/n true\n";
        assert_eq!(images(df, &[], None), ["busybox", "alpine", "node:20"]);
    }

    #[test]
    fn duplicates_are_listed_once() {
        let df = "FROM busybox AS a\nFROM busybox AS b\nCOPY --from=a / /\n";
        assert_eq!(images(df, &[], None), ["busybox"]);
    }

    #[test]
    fn errors_are_located() {
        let e = external_images("RUN x\nFROM a\n", &args(&[]), None).unwrap_err();
        assert_eq!(e.line, 1);
        let e = external_images("# c\n\nFROM\n", &args(&[]), None).unwrap_err();
        assert_eq!(e.line, 3);
        let e = external_images("ARG X\nFROM $X\n", &args(&[]), None).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("empty"));
        let e = external_images("", &args(&[]), None).unwrap_err();
        assert!(e.message.contains("no FROM"));
    }

    #[test]
    fn expansion_forms() {
        let v = args(&[("A", "a"), ("E", "")]);
        assert_eq!(expand("${A:+x}${E:-d}${E-d}$A\\$A$", &v).unwrap(), "xda$A$");
        assert!(expand("${A", &v).is_err());
        assert!(expand("${U:?need U}", &v).unwrap_err().contains("need U"));
    }
}
