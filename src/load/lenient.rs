//! KDL 1.0 requires every node to end with a newline or `;`, so knuffel
//! rejects one-line blocks such as `contexts { base "target:base" }` — the
//! form the product spec itself uses (and KDL 2.0 allows). Before decoding,
//! a `}` that directly follows an unterminated node on the same line gets a
//! `;` in place of the whitespace before it. The text keeps its length, so
//! every span still points at the user's file, which is what diagnostics
//! show.

/// What one pass over a file's text finds.
#[derive(Debug)]
pub struct Scan {
    /// The text with one-line blocks terminated, or `None` when nothing
    /// needed patching.
    pub patched: Option<String>,
    /// Byte offset of a `/*` that is never closed, if any (knuffel's parser
    /// takes exponential time on many of them, so this is checked first).
    pub open_comment: Option<usize>,
    /// Byte offset of the first `{` or `/*` nested more than
    /// [`MAX_NESTING`] deep, if any: both parsers recurse once per level,
    /// so deeper text is refused before any parser runs.
    pub too_deep: Option<usize>,
}

/// Deepest nesting of `{ }` blocks, and of `/* */` comments, a file may
/// have. Real files nest two or three levels; the parsers recurse once per
/// level, and this keeps them far from the end of any thread's stack
/// (debug builds and 2 MiB test threads included).
pub const MAX_NESTING: usize = 200;

/// [`Scan::open_comment`] alone.
#[cfg(test)]
pub fn unterminated_comment(text: &str) -> Option<usize> {
    scan(text).open_comment
}

/// Bytes the scan has no case for outside comments and strings (most of a
/// file: names, values, punctuation): it steps over runs of them at once.
static ORDINARY: [bool; 256] = {
    let mut t = [true; 256];
    let special = [
        b'\n', b'\r', 0x0c, 0xc2, 0xe2, b' ', b'\t', b'/', b'"', b'r', b'}', b'{',
    ];
    let mut k = 0;
    while k < special.len() {
        t[special[k] as usize] = false;
        k += 1;
    }
    t
};

/// Both answers in one pass over the text.
pub fn scan(text: &str) -> Scan {
    let b = text.as_bytes();
    let mut fixes = Vec::new();
    let mut i = 0;
    // Last significant byte since the last newline (None = only spaces).
    let mut last: Option<u8> = None;
    let mut comment_depth = 0usize;
    let mut comment_start = 0usize;
    let mut depth = 0usize;
    let mut too_deep = None;
    while i < b.len() {
        let c = b[i];
        if comment_depth > 0 {
            if c == b'*' && b.get(i + 1) == Some(&b'/') {
                comment_depth -= 1;
                i += 2;
            } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
                comment_depth += 1;
                if comment_depth > MAX_NESTING && too_deep.is_none() {
                    too_deep = Some(i);
                }
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match c {
            // KDL newlines: LF, CR, form feed, NEL, LS, PS.
            b'\n' | b'\r' | 0x0c => {
                last = None;
                i += 1;
            }
            0xc2 if b.get(i + 1) == Some(&0x85) => {
                last = None;
                i += 2;
            }
            0xe2 if b.get(i + 1) == Some(&0x80)
                && matches!(b.get(i + 2), Some(0xa8) | Some(0xa9)) =>
            {
                last = None;
                i += 3;
            }
            b' ' | b'\t' => i += 1,
            // Up to any KDL newline (which the next round reads).
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && !is_newline_at(b, i) {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                comment_depth = 1;
                comment_start = i;
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                last = Some(b'"');
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#')) => {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    last = Some(c);
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"'
                        && b[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&h| h == b'#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                i = j;
                last = Some(b'"');
            }
            b'{' => {
                depth += 1;
                if depth > MAX_NESTING && too_deep.is_none() {
                    too_deep = Some(i);
                }
                last = Some(b'{');
                i += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                if let Some(prev) = last {
                    // After `}` too: `a { b { c 1 } }` closes two blocks.
                    if prev != b'{' && prev != b';' && i > 0 && matches!(b[i - 1], b' ' | b'\t') {
                        fixes.push(i - 1);
                    }
                }
                last = Some(b'}');
                i += 1;
            }
            _ => {
                // This byte and the run of bytes after it that no case
                // above looks at.
                i += 1;
                while i < b.len() && ORDINARY[b[i] as usize] {
                    i += 1;
                }
                last = Some(b[i - 1]);
            }
        }
    }
    let open_comment = (comment_depth > 0).then_some(comment_start);
    if fixes.is_empty() {
        return Scan {
            patched: None,
            open_comment,
            too_deep,
        };
    }
    let mut out = b.to_vec();
    for f in fixes {
        out[f] = b';';
    }
    Scan {
        patched: String::from_utf8(out).ok(),
        open_comment,
        too_deep,
    }
}

/// Whether a KDL newline (LF, CR, FF, NEL, LS, PS) starts at `i`.
fn is_newline_at(b: &[u8], i: usize) -> bool {
    match b[i] {
        b'\n' | b'\r' | 0x0c => true,
        0xc2 => b.get(i + 1) == Some(&0x85),
        0xe2 => b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8) | Some(0xa9)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    /// The patched text alone.
    fn t(text: &str) -> Option<String> {
        super::scan(text).patched
    }

    #[test]
    fn patches_one_line_blocks() {
        assert_eq!(t(r#"a { b "x" }"#).as_deref(), Some(r#"a { b "x";}"#));
        assert_eq!(
            t(r#"a { b "x"; c "y" }"#).as_deref(),
            Some(r#"a { b "x"; c "y";}"#)
        );
        assert_eq!(t("a { b { c 1 } }").as_deref(), Some("a { b { c 1;};}"));
        assert!(
            knuffel::parse_ast::<knuffel::span::Span>("t", &t("a { b { c 1 } }").unwrap()).is_ok()
        );
    }

    #[test]
    fn leaves_terminated_and_strings_alone() {
        assert_eq!(t("a {\n  b \"x\"\n}\n"), None);
        assert_eq!(t(r#"a "${X} }""#), None);
        assert_eq!(t("a {}\n"), None);
        assert_eq!(t("a { b; }"), None);
        assert_eq!(t("// x }\n/* y } */ a \"z\"\n"), None);
        assert_eq!(t(r##"a r#"q " }"#"##), None);
    }

    #[test]
    fn other_kdl_newlines_end_nodes() {
        assert_eq!(t("a {\x0c }"), None);
        assert_eq!(t("a {\u{2028} }"), None);
        assert_eq!(t("a {\u{85} }"), None);
    }

    #[test]
    fn finds_unterminated_comments() {
        assert_eq!(super::unterminated_comment("a /* b */ c"), None);
        assert_eq!(super::unterminated_comment("a /* /* b */"), Some(2));
        assert_eq!(super::unterminated_comment("\"/*\" x"), None);
    }

    #[test]
    fn finds_nesting_too_deep() {
        let ok = "a {".repeat(super::MAX_NESTING) + &"}".repeat(super::MAX_NESTING);
        assert_eq!(super::scan(&ok).too_deep, None);
        let deep = "a {".repeat(10_000) + &"}".repeat(10_000);
        assert_eq!(
            super::scan(&deep).too_deep,
            Some(3 * super::MAX_NESTING + 2)
        );
        // Siblings do not add up; braces in strings and comments do not count.
        let wide = "a {}\n".repeat(10_000) + "\"" + &"{".repeat(500) + "\"" + &"// {\n".repeat(500);
        assert_eq!(super::scan(&wide).too_deep, None);
        let comments = "/*".repeat(1000) + &"*/".repeat(1000);
        assert_eq!(
            super::scan(&comments).too_deep,
            Some(2 * super::MAX_NESTING)
        );
        // A `//` comment ends at any KDL newline, CR alone included.
        let cr = "// c\r".to_string() + &"a {".repeat(300);
        assert!(super::scan(&cr).too_deep.is_some());
    }

    #[test]
    fn patched_text_keeps_length() {
        let s = "target \"a\" { contexts { base \"target:base\" } }";
        assert_eq!(t(s).unwrap().len(), s.len());
    }
}
