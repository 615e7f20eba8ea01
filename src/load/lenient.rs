//! KDL 1.0 requires every node to end with a newline or `;`, so knuffel
//! rejects one-line blocks such as `contexts { base "target:base" }` — the
//! form the product spec itself uses (and KDL 2.0 allows). Before decoding,
//! a `}` that directly follows an unterminated node on the same line gets a
//! `;` in place of the whitespace before it. The text keeps its length, so
//! every span still points at the user's file, which is what diagnostics
//! show.

/// Returns the patched text, or `None` when nothing needed patching.
pub fn terminate_inline_blocks(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut fixes = Vec::new();
    let mut i = 0;
    // Last significant byte since the last newline (None = only spaces).
    let mut last: Option<u8> = None;
    let mut comment_depth = 0usize;
    while i < b.len() {
        let c = b[i];
        if comment_depth > 0 {
            if c == b'*' && b.get(i + 1) == Some(&b'/') {
                comment_depth -= 1;
                i += 2;
            } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
                comment_depth += 1;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match c {
            b'\n' | b'\r' => {
                last = None;
                i += 1;
            }
            b' ' | b'\t' => i += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                comment_depth = 1;
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
                    if b[j] == b'"' && b[j + 1..].iter().take(hashes).filter(|&&h| h == b'#').count() == hashes {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                i = j;
                last = Some(b'"');
            }
            b'}' => {
                if let Some(prev) = last {
                    if prev != b'{' && prev != b';' && prev != b'}' && i > 0 && matches!(b[i - 1], b' ' | b'\t') {
                        fixes.push(i - 1);
                    }
                }
                last = Some(b'}');
                i += 1;
            }
            _ => {
                last = Some(c);
                i += 1;
            }
        }
    }
    if fixes.is_empty() {
        return None;
    }
    let mut out = b.to_vec();
    for f in fixes {
        out[f] = b';';
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::terminate_inline_blocks as t;

    #[test]
    fn patches_one_line_blocks() {
        assert_eq!(t(r#"a { b "x" }"#).as_deref(), Some(r#"a { b "x";}"#));
        assert_eq!(t(r#"a { b "x"; c "y" }"#).as_deref(), Some(r#"a { b "x"; c "y";}"#));
        assert_eq!(t("a { b { c 1 } }").as_deref(), Some("a { b { c 1;} }"));
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
    fn patched_text_keeps_length() {
        let s = "target \"a\" { contexts { base \"target:base\" } }";
        assert_eq!(t(s).unwrap().len(), s.len());
    }
}
