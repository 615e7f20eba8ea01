//! A port of [moby/patternmatcher], the `.dockerignore` matcher that fsutil
//! (and therefore `docker build`/buildx) applies to `include-patterns` and
//! `exclude-patterns`, plus its `ignorefile.ReadAll` parser.
//!
//! Semantics, as in Go:
//! * Each pattern is trimmed and cleaned with `filepath.Clean`; a leading
//!   `!` makes it an exception (re-inclusion). A pattern alone of `!` is an
//!   error, and so is one `filepath.Match` rejects.
//! * `*` and `?` never match `/`; `[...]` is a character class negated by
//!   `^`; `\` escapes; `**` matches any number of directories (including
//!   none); a trailing `**` matches everything below.
//! * A path matches a pattern when the path itself or any of its parent
//!   directories matches it; the last matching pattern decides.
//!
//! Patterns compile to a regular expression exactly as patternmatcher
//! builds it (Go RE2 syntax, translated where the `regex` crate reads a
//! character class differently).
//!
//! No crate on crates.io implements these semantics with the
//! parent-result API fsutil's walker needs, hence this port.
//!
//! [moby/patternmatcher]: https://github.com/moby/patternmatcher

use regex::Regex;

use super::gopath::{self, BadPattern};

/// Why a set of patterns was refused or could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A pattern consisting of `!` only.
    #[error("illegal exclusion pattern: \"!\"")]
    IllegalExclusion,
    /// A pattern Go's `filepath.Match` rejects, or whose regular expression
    /// does not compile (reported when the pattern is first evaluated, as
    /// patternmatcher does).
    #[error("syntax error in pattern {0:?}")]
    BadPattern(String),
}

/// How a pattern is matched (patternmatcher's `matchType`).
#[derive(Debug, Clone)]
enum MatchKind {
    /// The path equals the cleaned pattern.
    Exact,
    /// `dir/**`: the path starts with the pattern minus its trailing `**`.
    Prefix,
    /// `**/name`: the path ends with the pattern minus its leading `**`.
    Suffix,
    /// Anything else.
    Regexp(Regex),
    /// The regular expression did not compile; matching reports an error.
    Bad,
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: MatchKind,
}

impl Pattern {
    /// The cleaned pattern, without its `!`.
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// Whether the pattern was an exception (`!pattern`).
    pub fn exclusion(&self) -> bool {
        self.exclusion
    }

    /// Compiles a cleaned pattern as patternmatcher's `compile` does.
    fn compile(cleaned: String, exclusion: bool) -> Self {
        let (kind, regex) = translate(&cleaned);
        let kind = match kind {
            Kind::Exact => MatchKind::Exact,
            Kind::Prefix => MatchKind::Prefix,
            Kind::Suffix => MatchKind::Suffix,
            Kind::Regexp => match Regex::new(&go_regex_to_rust(&regex)) {
                Ok(re) => MatchKind::Regexp(re),
                Err(_) => MatchKind::Bad,
            },
        };
        Pattern {
            cleaned,
            exclusion,
            kind,
        }
    }

    fn matches(&self, path: &str) -> Result<bool, PatternError> {
        Ok(match &self.kind {
            MatchKind::Exact => path == self.cleaned,
            MatchKind::Prefix => {
                let prefix = &self.cleaned[..self.cleaned.len() - 2];
                path.starts_with(prefix)
            }
            MatchKind::Suffix => {
                let suffix = &self.cleaned[2..];
                if path.ends_with(suffix) {
                    true
                } else {
                    // "**/foo" matches "foo".
                    suffix.starts_with('/') && path == &suffix[1..]
                }
            }
            MatchKind::Regexp(re) => re.is_match(path),
            MatchKind::Bad => return Err(PatternError::BadPattern(self.cleaned.clone())),
        })
    }
}

/// Intermediate match results for a directory, handed to its children
/// (patternmatcher's `MatchInfo`). The default value means "no information"
/// and makes the matcher check the parent directories itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// A list of `.dockerignore`-style patterns (patternmatcher's
/// `PatternMatcher`).
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Compiles `patterns` (patternmatcher's `New`). Empty patterns are
    /// dropped.
    pub fn new<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut pm = PatternMatcher::default();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let mut p = gopath::clean(p);
            let mut exclusion = false;
            if let Some(rest) = p.strip_prefix('!') {
                if rest.is_empty() {
                    return Err(PatternError::IllegalExclusion);
                }
                exclusion = true;
                p = rest.to_owned();
                pm.exclusions = true;
            }
            // Syntax check with filepath.Match, as patternmatcher does.
            if let Err(BadPattern) = gopath::glob_match(&p, ".") {
                return Err(PatternError::BadPattern(p));
            }
            pm.patterns.push(Pattern::compile(p, exclusion));
        }
        Ok(pm)
    }

    /// Whether any pattern is an exception (`!pattern`).
    pub fn exclusions(&self) -> bool {
        self.exclusions
    }

    /// The compiled patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether `file` (a `/`-separated relative path) or one of its parent
    /// directories matches, taking exceptions into account
    /// (patternmatcher's `MatchesOrParentMatches`).
    pub fn matches_or_parent_matches(&self, file: &str) -> Result<bool, PatternError> {
        let parent_path = gopath::dir(file);
        let parent_dirs: Vec<&str> = parent_path.split('/').collect();
        let mut matched = false;
        for pattern in &self.patterns {
            // Skip evaluation if this is an inclusion and the file already
            // matched, or an exclusion and it has not matched yet.
            if pattern.exclusion != matched {
                continue;
            }
            let mut m = pattern.matches(file)?;
            if !m && parent_path != "." {
                m = parent_matches(pattern, &parent_dirs);
            }
            if m {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Like [`matches_or_parent_matches`](Self::matches_or_parent_matches),
    /// but reuses the parent directory's results (patternmatcher's
    /// `MatchesUsingParentResults`). Returns whether `file` matches and the
    /// information to pass when matching its children.
    pub fn matches_using_parent_results(
        &self,
        file: &str,
        parent: &MatchInfo,
    ) -> Result<(bool, MatchInfo), PatternError> {
        let parent_matched = &parent.parent_matched;
        if !parent_matched.is_empty() && parent_matched.len() != self.patterns.len() {
            return Err(PatternError::BadPattern(
                "wrong number of values in parentMatched".to_owned(),
            ));
        }
        let mut matched = false;
        let mut info = MatchInfo {
            parent_matched: vec![false; self.patterns.len()],
        };
        for (i, pattern) in self.patterns.iter().enumerate() {
            // If the parent matched this pattern, there is no need to recheck.
            let mut m = parent_matched.get(i).copied().unwrap_or(false);
            if !m {
                if pattern.exclusion != matched {
                    continue;
                }
                m = pattern.matches(file)?;
                // Without parent information, check the parents here.
                if !m && parent_matched.is_empty() {
                    let parent_path = gopath::dir(file);
                    if parent_path != "." {
                        let parent_dirs: Vec<&str> = parent_path.split('/').collect();
                        m = parent_matches(pattern, &parent_dirs);
                    }
                }
            }
            info.parent_matched[i] = m;
            if m {
                matched = !pattern.exclusion;
            }
        }
        Ok((matched, info))
    }
}

/// Whether `pattern` matches one of the parent directories `a`, `a/b`, …
/// (errors are ignored there, as in Go).
fn parent_matches(pattern: &Pattern, parent_dirs: &[&str]) -> bool {
    (1..=parent_dirs.len()).any(|i| {
        pattern
            .matches(&parent_dirs[..i].join("/"))
            .unwrap_or(false)
    })
}

/// patternmatcher's match types before the regex is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

/// Characters patternmatcher escapes because they are special in a regex
/// but not in a `filepath.Match` pattern.
fn should_escape(c: char) -> bool {
    matches!(c, '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$')
}

/// patternmatcher's `compile` with `/` as separator: the match type and
/// the Go regular expression (meaningful for [`Kind::Regexp`] only).
fn translate(pattern: &str) -> (Kind, String) {
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let mut chars = pattern.chars().peekable();
    let mut i = 0;
    while let Some(ch) = chars.next() {
        if ch == '*' {
            if chars.peek() == Some(&'*') {
                // Some flavour of "**".
                chars.next();
                // Treat "**/" as "**": eat the "/".
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    // "**" at the end: like .gitignore, accept everything.
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regexp;
                    }
                } else {
                    // "**" in the middle: any number of directories.
                    re.push_str("(.*/)?");
                    kind = Kind::Regexp;
                }
                if i == 0 {
                    kind = Kind::Suffix;
                }
            } else {
                // "*": anything but "/".
                re.push_str("[^/]*");
                kind = Kind::Regexp;
            }
        } else if ch == '?' {
            // "?": any character but "/".
            re.push_str("[^/]");
            kind = Kind::Regexp;
        } else if should_escape(ch) {
            re.push('\\');
            re.push(ch);
        } else if ch == '\\' {
            // Escape the next character; a trailing "\" stays.
            match chars.next() {
                Some(next) => {
                    re.push('\\');
                    re.push(next);
                    kind = Kind::Regexp;
                }
                None => re.push('\\'),
            }
        } else if ch == '[' || ch == ']' {
            re.push(ch);
            kind = Kind::Regexp;
        } else {
            re.push(ch);
        }
        i += 1;
    }
    if kind == Kind::Regexp {
        re.push('$');
    }
    (kind, re)
}

/// Rewrites a Go (RE2) regular expression built by [`translate`] so that
/// the `regex` crate reads it the same way. Inside a character class Go
/// treats `[` (unless it starts `[:name:]`), `&&`, `--` and `~~` literally,
/// whereas the `regex` crate reads nested classes and set operations there.
fn go_regex_to_rust(re: &str) -> String {
    let chars: Vec<char> = re.chars().collect();
    let mut out = String::with_capacity(re.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push(c);
            if let Some(&next) = chars.get(i + 1) {
                out.push(next);
            }
            i += 2;
            continue;
        }
        if !in_class {
            out.push(c);
            if c == '[' {
                in_class = true;
                // A leading "^" negates; a "]" right after is literal in Go.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        match c {
            ']' => {
                in_class = false;
                out.push(c);
            }
            '[' => {
                // A POSIX class "[:alpha:]" keeps its meaning.
                let rest: String = chars[i..].iter().collect();
                match rest.find(":]").filter(|_| rest.starts_with("[:")) {
                    Some(end) => {
                        out.push_str(&rest[..end + 2]);
                        i += rest[..end + 2].chars().count();
                        continue;
                    }
                    None => out.push_str("\\["),
                }
            }
            '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '-' if chars.get(i + 1) == Some(&'-') => out.push_str("\\-"),
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// Parses the text of a `.dockerignore` file into patterns, as
/// `ignorefile.ReadAll` does: strips a UTF-8 BOM, skips `#` comment lines
/// and blank lines, trims whitespace, cleans each pattern and drops a
/// leading `/` (keeping a leading `!`).
pub fn parse_ignore_file(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.lines() {
        // Lines starting with "#" are comments, before any trimming.
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = gopath::clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        if invert {
            cleaned.insert(0, '!');
        }
        out.push(cleaned);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// patternmatcher's package-level `MatchesOrParentMatches`.
    fn matches(file: &str, patterns: &[&str]) -> Result<bool, PatternError> {
        let pm = PatternMatcher::new(patterns)?;
        let file = gopath::clean(file);
        if file == "." {
            // Don't let them exclude everything.
            return Ok(false);
        }
        pm.matches_or_parent_matches(&file)
    }

    #[test]
    fn wildcard_and_simple_matches() {
        assert_eq!(matches("fileutils.go", &["*"]), Ok(true));
        assert_eq!(matches("fileutils.go", &["*.go"]), Ok(true));
        assert_eq!(
            matches("fileutils.go", &["!fileutils.go", "*.go"]),
            Ok(true)
        );
        assert_eq!(
            matches("docs/README.md", &["docs", "!docs/README.md"]),
            Ok(false)
        );
        assert_eq!(
            matches("docs/README.md", &["docs/", "!docs/README.md"]),
            Ok(false)
        );
        assert_eq!(
            matches("docs/README.md", &["docs/*", "!docs/README.md"]),
            Ok(false)
        );
        assert_eq!(
            matches("fileutils.go", &["*.go", "!fileutils.go"]),
            Ok(false)
        );
        assert_eq!(matches(".", &["*.go"]), Ok(false));
        assert_eq!(matches("/any/path/there", &[]), Ok(false));
    }

    #[test]
    fn errors() {
        assert_eq!(
            matches("fileutils.go", &["!"]),
            Err(PatternError::IllegalExclusion)
        );
        assert!(matches!(
            matches("/any/path/there", &["["]),
            Err(PatternError::BadPattern(_))
        ));
        // Passes filepath.Match validation, but the regex does not compile
        // (range "l-O" runs backwards): reported at match time, every time.
        let pm = PatternMatcher::new(["[Local-Only]/"]).expect("valid for filepath.Match");
        assert!(pm.matches_or_parent_matches("x").is_err());
        assert!(pm.matches_or_parent_matches("x").is_err());
    }

    #[test]
    fn clean_patterns() {
        let pm = PatternMatcher::new(["docs", "config", ""]).expect("valid");
        assert_eq!(pm.patterns().len(), 2);
        assert!(!pm.exclusions());
        for p in [
            vec!["docs", "!docs/README.md"],
            vec!["docs", "  !docs/README.md"],
            vec!["docs", "!docs/README.md  "],
        ] {
            assert!(PatternMatcher::new(p).expect("valid").exclusions());
        }
    }

    /// patternmatcher's TestMatches table.
    const TESTS: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**/", "file/", true),
        ("**", "/", true),
        ("**/", "/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file", true),
        ("**", "dir/file/", true),
        ("**/", "dir/file/", true),
        ("**/**", "dir/file", true),
        ("**/**", "dir/file/", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/file/", true),
        ("dir/**", "dir/dir2/file", true),
        ("dir/**", "dir/dir2/file/", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("a\\\\", "a\\", true),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        ("a\\*b", "a*b", true),
        // Additional cases for the regex translation.
        ("a[&&]b", "a&b", true),
        ("a[x~~]b", "a~b", true),
        ("a[[]b", "a[b", true),
        ("a[[:digit:]]b", "a1b", true),
        ("a[[:digit:]]b", "axb", false),
    ];

    const MULTI: &[(&[&str], &str, bool)] = &[
        (&["**", "!util/docker/web"], "util/docker/web/foo", false),
        (
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo",
            true,
        ),
        (
            &[
                "**",
                "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            ],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        ),
        (
            &["**", "!dist/*.whl"],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        ),
    ];

    fn all_cases() -> Vec<(Vec<&'static str>, &'static str, bool)> {
        TESTS
            .iter()
            .map(|(p, t, pass)| (vec![*p], *t, *pass))
            .chain(MULTI.iter().map(|(p, t, pass)| (p.to_vec(), *t, *pass)))
            .collect()
    }

    #[test]
    fn matches_or_parent_matches_table() {
        for (patterns, text, pass) in all_cases() {
            let pm = PatternMatcher::new(&patterns).expect("valid pattern");
            let res = pm.matches_or_parent_matches(text).expect("no match error");
            assert_eq!(res, pass, "patterns={patterns:?} text={text:?}");
        }
    }

    #[test]
    fn matches_using_parent_results_table() {
        for (patterns, text, pass) in all_cases() {
            let pm = PatternMatcher::new(&patterns).expect("valid pattern");
            let parent_path = gopath::dir(text);
            let mut info = MatchInfo::default();
            if parent_path != "." {
                let dirs: Vec<&str> = parent_path.split('/').collect();
                for i in 1..=dirs.len() {
                    info = pm
                        .matches_using_parent_results(&dirs[..i].join("/"), &info)
                        .expect("no match error")
                        .1;
                }
            }
            let (res, _) = pm
                .matches_using_parent_results(text, &info)
                .expect("no match error");
            assert_eq!(res, pass, "patterns={patterns:?} text={text:?}");
        }
    }

    #[test]
    fn matches_using_parent_results_no_context_table() {
        for (patterns, text, pass) in all_cases() {
            let pm = PatternMatcher::new(&patterns).expect("valid pattern");
            let (res, _) = pm
                .matches_using_parent_results(text, &MatchInfo::default())
                .expect("no match error");
            assert_eq!(res, pass, "patterns={patterns:?} text={text:?}");
        }
    }

    /// patternmatcher's TestMatch table (Go's filepath.Match tests run
    /// through the package-level matcher).
    #[test]
    fn match_table() {
        let bad = |r: Result<bool, PatternError>| matches!(r, Err(PatternError::BadPattern(_)));
        let cases: &[(&str, &str, Option<bool>)] = &[
            ("abc", "abc", Some(true)),
            ("*", "abc", Some(true)),
            ("*c", "abc", Some(true)),
            ("a*", "a", Some(true)),
            ("a*", "abc", Some(true)),
            ("a*", "ab/c", Some(true)),
            ("a*/b", "abc/b", Some(true)),
            ("a*/b", "a/c/b", Some(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
            ("ab[c]", "abc", Some(true)),
            ("ab[b-d]", "abc", Some(true)),
            ("ab[e-g]", "abc", Some(false)),
            ("ab[^c]", "abc", Some(false)),
            ("ab[^b-d]", "abc", Some(false)),
            ("ab[^e-g]", "abc", Some(true)),
            ("a\\*b", "a*b", Some(true)),
            ("a\\*b", "ab", Some(false)),
            ("a?b", "a☺b", Some(true)),
            ("a[^a]b", "a☺b", Some(true)),
            ("a???b", "a☺b", Some(false)),
            ("a[^a][^a][^a]b", "a☺b", Some(false)),
            ("[a-ζ]*", "α", Some(true)),
            ("*[a-ζ]", "A", Some(false)),
            ("a?b", "a/b", Some(false)),
            ("a*b", "a/b", Some(false)),
            ("[\\]a]", "]", Some(true)),
            ("[\\-]", "-", Some(true)),
            ("[x\\-]", "x", Some(true)),
            ("[x\\-]", "-", Some(true)),
            ("[x\\-]", "z", Some(false)),
            ("[\\-x]", "x", Some(true)),
            ("[\\-x]", "-", Some(true)),
            ("[\\-x]", "a", Some(false)),
            ("[]a]", "]", None),
            ("[-]", "-", None),
            ("[x-]", "x", None),
            ("[x-]", "-", None),
            ("[x-]", "z", None),
            ("[-x]", "x", None),
            ("[-x]", "-", None),
            ("[-x]", "a", None),
            ("\\", "a", None),
            ("[a-b-c]", "a", None),
            ("[", "a", None),
            ("[^", "a", None),
            ("[^bc", "a", None),
            ("a[", "a", None),
            ("a[", "ab", None),
            ("*x", "xxx", Some(true)),
        ];
        for (pattern, s, want) in cases {
            let got = matches(s, &[pattern]);
            match want {
                Some(w) => assert_eq!(got, Ok(*w), "pattern={pattern:?} s={s:?}"),
                None => assert!(bad(got.clone()), "pattern={pattern:?} s={s:?}: {got:?}"),
            }
        }
    }

    /// patternmatcher's TestCompile table (slash separator).
    #[test]
    fn compile_table() {
        let cases: &[(&str, Kind, &str)] = &[
            ("*", Kind::Regexp, r"^[^/]*$"),
            ("file*", Kind::Regexp, r"^file[^/]*$"),
            ("*file", Kind::Regexp, r"^[^/]*file$"),
            ("a*/b", Kind::Regexp, r"^a[^/]*/b$"),
            ("**", Kind::Suffix, ""),
            ("**/**", Kind::Regexp, r"^(.*/)?.*$"),
            ("dir/**", Kind::Prefix, ""),
            ("**/dir", Kind::Suffix, ""),
            ("**/dir2/*", Kind::Regexp, r"^(.*/)?dir2/[^/]*$"),
            ("**/dir2/**", Kind::Regexp, r"^(.*/)?dir2/.*$"),
            ("**file", Kind::Suffix, ""),
            ("**/file*txt", Kind::Regexp, r"^(.*/)?file[^/]*txt$"),
            ("**/**/*.txt", Kind::Regexp, r"^(.*/)?(.*/)?[^/]*\.txt$"),
            ("a[b-d]e", Kind::Regexp, r"^a[b-d]e$"),
            (".*", Kind::Regexp, r"^\.[^/]*$"),
            ("abc.def", Kind::Exact, ""),
            ("abc?def", Kind::Regexp, r"^abc[^/]def$"),
            ("**/foo/bar", Kind::Suffix, ""),
            ("a(b)c/def", Kind::Exact, ""),
            ("a.|)$(}+{bc", Kind::Exact, ""),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                Kind::Exact,
                "",
            ),
        ];
        for (pattern, kind, re) in cases {
            let (k, r) = translate(&gopath::clean(pattern));
            assert_eq!(k, *kind, "pattern {pattern:?}");
            if k == Kind::Regexp {
                assert_eq!(r, *re, "pattern {pattern:?}");
            }
        }
    }

    #[test]
    fn rust_regex_translation() {
        assert_eq!(go_regex_to_rust(r"^a[b-d]e$"), r"^a[b-d]e$");
        assert_eq!(go_regex_to_rust(r"^a[&&]b$"), r"^a[\&\&]b$");
        assert_eq!(go_regex_to_rust(r"^a[[]b$"), r"^a[\[]b$");
        assert_eq!(go_regex_to_rust(r"^a[[:alpha:]]b$"), r"^a[[:alpha:]]b$");
        assert_eq!(go_regex_to_rust(r"^a[\]]b$"), r"^a[\]]b$");
        assert_eq!(go_regex_to_rust(r"^[^/]*$"), r"^[^/]*$");
    }

    #[test]
    fn ignore_file() {
        let text = "\u{feff}# comment\n\n  node_modules  \n/build/\n!/build/keep\n! spaced \n./a/../b\n #not a comment\n/\n";
        assert_eq!(
            parse_ignore_file(text),
            vec![
                "node_modules",
                "build",
                "!build/keep",
                "!spaced",
                "b",
                "#not a comment",
                "/",
            ]
        );
    }
}
