//! A hand-written KDL 1.0 parser for the fast path of the load stage.
//!
//! It accepts exactly the language of knuffel 3.2's chumsky grammar
//! (`knuffel/src/grammar.rs`), quirks included, and builds the same tree:
//! same nodes, values, byte spans, and properties in the same order
//! (knuffel keeps them in a `BTreeMap`: sorted by key, a repeated key keeps
//! the first key's span and the last value). The grammar is a PEG (chumsky
//! 0.9 backtracks at every choice, optional and repetition and never into a
//! finished one); each function below mirrors one grammar rule and restores
//! the position when it fails. Errors carry no detail: on any error the
//! caller re-parses with knuffel, which produces the diagnostics.
//!
//! Strings without escapes borrow from the input. knuffel's AST cannot be
//! built outside that crate, so this tree is our own; [`from_knuffel`]
//! converts knuffel's tree into it (the slow path and the differential tests
//! use that).

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::source::{FileId, Span};

/// A byte range in the parsed text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Loc {
    pub start: u32,
    pub end: u32,
}

impl Loc {
    fn new(start: usize, end: usize) -> Loc {
        Loc {
            start: start as u32,
            end: end as u32,
        }
    }
    pub fn span(self, file: FileId) -> Span {
        Span {
            file,
            start: self.start,
            end: self.end,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Document<'a> {
    pub nodes: Vec<Node<'a>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node<'a> {
    /// From the type annotation (or name) through the terminator.
    pub span: Loc,
    pub type_name: Option<(Cow<'a, str>, Loc)>,
    pub name: Cow<'a, str>,
    pub name_span: Loc,
    pub args: Vec<Value<'a>>,
    /// Sorted by key, keys unique.
    pub props: Vec<Prop<'a>>,
    pub children: Option<Children<'a>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Children<'a> {
    /// `{` through `}`.
    pub span: Loc,
    pub nodes: Vec<Node<'a>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prop<'a> {
    pub key: Cow<'a, str>,
    pub key_span: Loc,
    pub value: Value<'a>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value<'a> {
    pub type_name: Option<(Cow<'a, str>, Loc)>,
    pub lit: Lit<'a>,
    /// The literal only (without the type annotation).
    pub span: Loc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Radix {
    Bin,
    Oct,
    Dec,
    Hex,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lit<'a> {
    Null,
    Bool(bool),
    /// Sign and digits, underscores removed (as knuffel keeps them).
    Int(Radix, Cow<'a, str>),
    /// The text with underscores removed.
    Decimal(Cow<'a, str>),
    Str(Cow<'a, str>),
}

impl Lit<'_> {
    /// The integer as an `i64` (`None`: not an integer; `Some(None)`: out
    /// of range), converted as knuffel's `TryFrom<&Integer> for i64`.
    pub fn as_i64(&self) -> Option<Option<i64>> {
        let Lit::Int(radix, s) = self else {
            return None;
        };
        let r = match radix {
            Radix::Bin => i64::from_str_radix(s, 2),
            Radix::Oct => i64::from_str_radix(s, 8),
            Radix::Dec => s.parse::<i64>(),
            Radix::Hex => i64::from_str_radix(s, 16),
        };
        Some(r.ok())
    }

    /// Short name of the kind, for "expected X, found Y".
    pub fn kind(&self) -> &'static str {
        match self {
            Lit::Null => "null",
            Lit::Bool(_) => "a boolean",
            Lit::Int(..) => "an integer",
            Lit::Decimal(_) => "a number",
            Lit::Str(_) => "a string",
        }
    }
}

impl<'a> Node<'a> {
    pub fn children(&self) -> &[Node<'a>] {
        self.children.as_ref().map(|c| &c.nodes[..]).unwrap_or(&[])
    }
}

/// The text is not valid KDL (as knuffel reads it); knuffel has the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

/// Parse a whole document. `Err` when knuffel would reject the text.
pub fn parse(text: &str) -> Result<Document<'_>, Rejected> {
    parse_part(text, 0, text.len())
}

/// Parse the top-level nodes of `text[start..end]`, with spans into the
/// whole text: one part of a document parsed in parts (see [`cut_points`]).
///
/// `start` must be where parsing the whole text reaches a top-level node
/// (0, or the `end` of a part accepted before). `Ok` means the whole
/// text's parse reaches `end` the same way, with these nodes in between, so
/// the parts' nodes put together are the whole document's. `Err` when the
/// text is rejected, or when `end` is not such a point (it lies inside a
/// node, string or comment): then only [`parse`] on the whole text tells.
pub fn parse_part(text: &str, start: usize, end: usize) -> Result<Document<'_>, Rejected> {
    parse_part_capped(text, start, end, None).map_err(|_| Rejected)
}

/// Why [`parse_part_capped`] gave no document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Rejected ([`Rejected`]); the furthest offset at which a node, block
    /// or terminator was expected and not found (a syntax error's location
    /// when knuffel is not asked, see `load::decode_file`).
    Rejected(usize),
    /// More nodes than the shared count allowed; where that was noticed.
    TooMany(usize),
}

/// Nodes are counted against a shared count in steps of this many (one
/// atomic operation per step, not per node).
const COUNT_STEP: usize = 1024;

/// [`parse_part`], counting the nodes (at every depth) and their arguments
/// and properties against
/// `count`: (nodes counted so far by every part, most allowed). Past the
/// limit, parsing stops with [`Stop::TooMany`] (so a file of millions of
/// tiny nodes never becomes a tree of millions of nodes).
pub fn parse_part_capped<'a>(
    text: &'a str,
    start: usize,
    end: usize,
    count: Option<(&'a AtomicUsize, usize)>,
) -> Result<Document<'a>, Stop> {
    let mut p = Parser::new(text, start, end);
    p.count = count;
    let nodes = p.nodes();
    if let Some(at) = p.too_many {
        return Err(Stop::TooMany(at));
    }
    let at = |p: &Parser| {
        let mut at = p.furthest.max(p.i).min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    let Some(nodes) = nodes else {
        return Err(Stop::Rejected(at(&p)));
    };
    if p.i != end || p.bad {
        return Err(Stop::Rejected(at(&p)));
    }
    Ok(Document { nodes })
}

/// Offsets that probably start a top-level node, cutting `text` into about
/// `parts` parts of similar size: each is the start of the first line at or
/// after an even share of the text that begins with neither whitespace,
/// `}` nor `/` (top-level nodes are usually written so). They are guesses:
/// [`parse_part`] checks them.
pub fn cut_points(text: &str, parts: usize) -> Vec<usize> {
    let b = text.as_bytes();
    let mut cuts: Vec<usize> = Vec::new();
    for k in 1..parts.max(1) {
        let from = (b.len() * k / parts).max(cuts.last().map_or(0, |&c| c + 1));
        let Some(at) = b.get(from..).and_then(|rest| {
            rest.windows(2).position(|w| {
                w[0] == b'\n' && !matches!(w[1], b' ' | b'\t' | b'\r' | b'\n' | b'}' | b'/')
            })
        }) else {
            break;
        };
        cuts.push(from + at + 1);
    }
    cuts
}

/// Deepest nesting of `{ }` blocks, and of `/* */` comments, the parser
/// follows (it recurses once per level). `load::decode_file` refuses deeper
/// text before parsing; deeper nesting is rejected here too.
const MAX_DEPTH: usize = super::lenient::MAX_NESTING;

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// Where the top level stops: the end of the part being parsed.
    stop: usize,
    /// knuffel reports an error but goes on (an identifier as an argument,
    /// a bad `\u{…}`): the document is rejected at the end.
    bad: bool,
    /// Start offsets of `/*` comments known not to close (memo: knuffel
    /// retries them, which is exponential).
    failed_comments: Vec<usize>,
    depth: usize,
    comment_depth: usize,
    /// The furthest offset at which something expected was missing.
    furthest: usize,
    /// Nodes parsed by this parser.
    nodes: usize,
    /// The shared node count and its limit ([`parse_part_capped`]).
    count: Option<(&'a AtomicUsize, usize)>,
    /// Where the node limit was reached.
    too_many: Option<usize>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, start: usize, end: usize) -> Parser<'a> {
        Parser {
            s: text,
            b: text.as_bytes(),
            i: start,
            stop: end,
            bad: false,
            failed_comments: Vec::new(),
            depth: 0,
            comment_depth: 0,
            furthest: 0,
            nodes: 0,
            count: None,
            too_many: None,
        }
    }

    /// Count one more node; `false` once over the limit.
    fn count_node(&mut self) -> bool {
        self.nodes += 1;
        if !self.nodes.is_multiple_of(COUNT_STEP) {
            return true;
        }
        let Some((count, max)) = self.count else {
            return true;
        };
        let before = count.fetch_add(COUNT_STEP, Ordering::Relaxed);
        if before + COUNT_STEP > max {
            self.too_many.get_or_insert(self.i);
            return false;
        }
        true
    }

    /// Give up here (noting where, for [`Stop::Rejected`]).
    fn fail<T>(&mut self) -> Option<T> {
        self.furthest = self.furthest.max(self.i);
        None
    }
}

fn is_ws_char(c: char) -> bool {
    matches!(
        c,
        '\t' | ' ' | '\u{00a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{FEFF}'
    )
}

fn is_special(c: char) -> bool {
    matches!(
        c,
        '\\' | '/'
            | '('
            | ')'
            | '{'
            | '}'
            | '<'
            | '>'
            | ';'
            | '['
            | ']'
            | '='
            | ','
            | '"'
            | '\u{00a0}'
            | '\u{1680}'
            | '\u{2000}'
            ..='\u{200A}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{0085}'
                | '\u{2028}'
                | '\u{2029}'
    )
}

/// knuffel's `id_char`: note that it excludes `!` (0x21).
fn is_id_char(c: char) -> bool {
    c > '\u{21}' && !is_special(c)
}

fn is_id_sans_dig(c: char) -> bool {
    c > '\u{20}' && !c.is_ascii_digit() && !is_special(c)
}

fn is_id_sans_sign_dig(c: char) -> bool {
    is_id_sans_dig(c) && c != '-' && c != '+'
}

impl<'a> Parser<'a> {
    #[inline]
    fn byte(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn byte_at(&self, k: usize) -> Option<u8> {
        self.b.get(self.i + k).copied()
    }

    #[inline]
    fn peek(&self) -> Option<char> {
        let c = *self.b.get(self.i)?;
        if c < 0x80 {
            Some(c as char)
        } else {
            self.s[self.i..].chars().next()
        }
    }

    #[inline]
    fn starts(&self, pat: &[u8]) -> bool {
        self.b[self.i..].starts_with(pat)
    }

    /// `newline`: CRLF, CR, LF, FF, NEL, LS, PS.
    fn newline(&mut self) -> bool {
        match self.byte() {
            Some(b'\r') => {
                self.i += if self.byte_at(1) == Some(b'\n') { 2 } else { 1 };
                true
            }
            Some(b'\n') | Some(0x0c) => {
                self.i += 1;
                true
            }
            Some(c) if c >= 0x80 => match self.peek() {
                Some('\u{0085}') | Some('\u{2028}') | Some('\u{2029}') => {
                    self.i += self.peek().map_or(0, char::len_utf8);
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// `ws`: one or more whitespace characters, or a `/* */` comment.
    fn ws(&mut self) -> bool {
        let start = self.i;
        while let Some(c) = self.byte() {
            if c == b' ' || c == b'\t' {
                self.i += 1;
            } else if c >= 0x80 {
                match self.peek() {
                    Some(ch) if is_ws_char(ch) => self.i += ch.len_utf8(),
                    _ => break,
                }
            } else {
                break;
            }
        }
        if self.i > start {
            return true;
        }
        self.ml_comment()
    }

    /// `ml_comment`: `/*` (nested comment | not `*` | `*` not before `/`)* `*/`.
    fn ml_comment(&mut self) -> bool {
        if !self.starts(b"/*") {
            return false;
        }
        let start = self.i;
        if self.failed_comments.contains(&start) {
            return false;
        }
        self.i += 2;
        loop {
            match self.byte() {
                None => {
                    self.failed_comments.push(start);
                    self.i = start;
                    return false;
                }
                Some(b'/') if self.byte_at(1) == Some(b'*') => {
                    if self.comment_depth >= MAX_DEPTH {
                        self.failed_comments.push(start);
                        self.i = start;
                        return false;
                    }
                    self.comment_depth += 1;
                    let closed = self.ml_comment();
                    self.comment_depth -= 1;
                    if !closed {
                        self.i += 1; // `/` as an ordinary character
                    }
                }
                Some(b'*') if self.byte_at(1) == Some(b'/') => {
                    self.i += 2;
                    return true;
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// `comment`: `//` up to and including a newline, or to the end.
    fn comment(&mut self) -> bool {
        if !self.starts(b"//") {
            return false;
        }
        self.i += 2;
        loop {
            match self.byte() {
                None => return true,
                Some(b'\r') | Some(b'\n') | Some(0x0c) => {
                    self.newline();
                    return true;
                }
                Some(c) if c >= 0x80 => {
                    if self.newline() {
                        return true;
                    }
                    self.i += self.peek().map_or(1, char::len_utf8);
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// `esc_line`: `\` ws* (comment | newline).
    fn esc_line(&mut self) -> bool {
        if self.byte() != Some(b'\\') {
            return false;
        }
        let start = self.i;
        self.i += 1;
        while self.ws() {}
        if self.comment() || self.newline() {
            return true;
        }
        self.i = start;
        false
    }

    fn node_space(&mut self) -> bool {
        self.ws() || self.esc_line()
    }

    fn node_spaces(&mut self) {
        while self.node_space() {}
    }

    fn line_space(&mut self) -> bool {
        self.newline() || self.ws() || self.comment()
    }

    /// A `/-` (slashdash) and the node space after it, consumed; whether
    /// there was one.
    fn slashdash(&mut self) -> bool {
        if !self.starts(b"/-") {
            return false;
        }
        self.i += 2;
        self.node_spaces();
        true
    }

    /// `nodes`: line_space* ((`/-` node_space*)? node line_space*)*.
    fn nodes(&mut self) -> Option<Vec<Node<'a>>> {
        let mut out = Vec::new();
        loop {
            while self.line_space() {}
            match self.byte() {
                None | Some(b'}') => return Some(out),
                _ if self.depth == 0 && self.i >= self.stop => return Some(out),
                _ => {}
            }
            let dashed = self.slashdash();
            let node = self.node()?;
            if !dashed {
                out.push(node);
            }
        }
    }

    fn node(&mut self) -> Option<Node<'a>> {
        if !self.count_node() {
            return None;
        }
        let start = self.i;
        let type_name = if self.byte() == Some(b'(') {
            Some(self.type_name()?)
        } else {
            None
        };
        let name_start = self.i;
        let Some(name) = self.ident() else {
            return self.fail();
        };
        let name_span = Loc::new(name_start, self.i);
        let mut args = Vec::new();
        let mut props: Vec<Prop<'a>> = Vec::new();
        loop {
            let save = self.i;
            if !self.node_space() {
                break;
            }
            self.node_spaces();
            // Arguments and properties count as nodes: one node with
            // millions of arguments is as large a tree.
            if !self.count_node() {
                return None;
            }
            match self.prop_or_arg() {
                Some(Item::Arg(v)) => args.push(v),
                Some(Item::Prop(p)) => match props.iter_mut().find(|q| q.key == p.key) {
                    Some(q) => q.value = p.value,
                    None => props.push(p),
                },
                Some(Item::Ignore) => {}
                None => {
                    self.i = save;
                    break;
                }
            }
        }
        if props.len() > 1 {
            props.sort_by(|a, b| a.key.cmp(&b.key));
        }
        let save = self.i;
        self.node_spaces();
        let dashed = self.slashdash();
        let mut children = None;
        match self.braced() {
            Some(c) => {
                if !dashed {
                    children = Some(c);
                }
            }
            None => self.i = save,
        }
        self.node_spaces();
        // node_terminator: newline | comment | `;` | end
        if !(self.newline() || self.comment()) {
            match self.byte() {
                Some(b';') => self.i += 1,
                None => {}
                Some(_) => return self.fail(),
            }
        }
        Some(Node {
            span: Loc::new(start, self.i),
            type_name,
            name,
            name_span,
            args,
            props,
            children,
        })
    }

    fn braced(&mut self) -> Option<Children<'a>> {
        if self.byte() != Some(b'{') || self.depth >= MAX_DEPTH {
            return None;
        }
        let start = self.i;
        self.i += 1;
        self.depth += 1;
        let nodes = self.nodes();
        self.depth -= 1;
        let nodes = nodes?;
        if self.byte() != Some(b'}') {
            return self.fail();
        }
        self.i += 1;
        Some(Children {
            span: Loc::new(start, self.i),
            nodes,
        })
    }

    /// `prop_or_arg`: (`/-` node_space* inner → ignored) | inner.
    fn prop_or_arg(&mut self) -> Option<Item<'a>> {
        let save = self.i;
        if self.slashdash() {
            if self.prop_or_arg_inner().is_some() {
                return Some(Item::Ignore);
            }
            self.i = save;
        }
        self.prop_or_arg_inner()
    }

    fn prop_or_arg_inner(&mut self) -> Option<Item<'a>> {
        let save = self.i;
        // 1. literal ('=' value)?
        if let Some(lit) = self.literal() {
            let lit_span = Loc::new(save, self.i);
            let after = self.i;
            let value = self.eq_value();
            match (lit, value) {
                (Lit::Str(key), Some(value)) => {
                    return Some(Item::Prop(Prop {
                        key,
                        key_span: lit_span,
                        value,
                    }))
                }
                (lit, None) => {
                    self.i = after;
                    return Some(Item::Arg(Value {
                        type_name: None,
                        lit,
                        span: lit_span,
                    }));
                }
                // a keyword or number as a property name: next alternative
                (_, Some(_)) => self.i = save,
            }
        }
        // 2. bare identifier '=' value (without '=': reported, kept as a string)
        if let Some(key) = self.bare_ident() {
            let key_span = Loc::new(save, self.i);
            let after = self.i;
            if let Some(value) = self.eq_value() {
                return Some(Item::Prop(Prop {
                    key,
                    key_span,
                    value,
                }));
            }
            self.i = after;
            self.bad = true;
            return Some(Item::Arg(Value {
                type_name: None,
                lit: Lit::Str(key),
                span: key_span,
            }));
        }
        // 3. (type)literal
        self.i = save;
        let v = self.type_name_value();
        if v.is_none() {
            self.i = save;
        }
        v.map(Item::Arg)
    }

    /// `'=' value`, restoring the position when it does not match.
    fn eq_value(&mut self) -> Option<Value<'a>> {
        if self.byte() != Some(b'=') {
            return None;
        }
        let save = self.i;
        self.i += 1;
        let v = self.value();
        if v.is_none() {
            self.i = save;
        }
        v
    }

    /// `value`: (type)literal | literal.
    fn value(&mut self) -> Option<Value<'a>> {
        let save = self.i;
        if let Some(v) = self.type_name_value() {
            return Some(v);
        }
        self.i = save;
        let lit = self.literal()?;
        Some(Value {
            type_name: None,
            lit,
            span: Loc::new(save, self.i),
        })
    }

    fn type_name_value(&mut self) -> Option<Value<'a>> {
        let save = self.i;
        let t = self.type_name();
        let t = match t {
            Some(t) => t,
            None => {
                self.i = save;
                return None;
            }
        };
        let lit_start = self.i;
        match self.literal() {
            Some(lit) => Some(Value {
                type_name: Some(t),
                lit,
                span: Loc::new(lit_start, self.i),
            }),
            None => {
                self.i = save;
                None
            }
        }
    }

    /// `type_name`: `(` ident `)`, with its span (parentheses included).
    fn type_name(&mut self) -> Option<(Cow<'a, str>, Loc)> {
        let save = self.i;
        if self.byte() != Some(b'(') {
            return None;
        }
        self.i += 1;
        let name = match self.ident() {
            Some(n) if self.byte() == Some(b')') => n,
            _ => {
                self.i = save;
                return None;
            }
        };
        self.i += 1;
        Some((name, Loc::new(save, self.i)))
    }

    /// `ident`: fails on anything a number starts with; then a bare
    /// identifier (not a keyword); then a string.
    fn ident(&mut self) -> Option<Cow<'a, str>> {
        let k = usize::from(matches!(self.byte(), Some(b'+') | Some(b'-')));
        if matches!(self.byte_at(k), Some(b'0'..=b'9')) {
            return None;
        }
        if let Some(id) = self.bare_ident() {
            return Some(id);
        }
        self.string()
    }

    fn bare_ident(&mut self) -> Option<Cow<'a, str>> {
        let start = self.i;
        let c0 = self.peek()?;
        if c0 == '+' || c0 == '-' {
            self.i += 1;
            match self.peek() {
                Some(c1) if is_id_sans_dig(c1) => {
                    self.i += c1.len_utf8();
                    self.id_chars();
                }
                _ => {}
            }
        } else if is_id_sans_sign_dig(c0) {
            self.i += c0.len_utf8();
            self.id_chars();
        } else {
            return None;
        }
        let s = &self.s[start..self.i];
        if matches!(s, "true" | "false" | "null") {
            self.i = start;
            return None;
        }
        Some(Cow::Borrowed(s))
    }

    fn id_chars(&mut self) {
        while let Some(c) = self.byte() {
            if c < 0x80 {
                if c > 0x21 && !is_special(c as char) {
                    self.i += 1;
                } else {
                    break;
                }
            } else {
                match self.peek() {
                    Some(ch) if is_id_char(ch) => self.i += ch.len_utf8(),
                    _ => break,
                }
            }
        }
    }

    /// `literal`: string | keyword | number.
    fn literal(&mut self) -> Option<Lit<'a>> {
        if let Some(s) = self.string() {
            return Some(Lit::Str(s));
        }
        for (word, lit) in [
            (&b"null"[..], Lit::Null),
            (b"true", Lit::Bool(true)),
            (b"false", Lit::Bool(false)),
        ] {
            if self.starts(word) {
                self.i += word.len();
                return Some(lit);
            }
        }
        self.number()
    }

    fn string(&mut self) -> Option<Cow<'a, str>> {
        match self.byte() {
            Some(b'r') => self.raw_string(),
            Some(b'"') => self.escaped_string(),
            _ => None,
        }
    }

    /// `r#*"…"#*`: ends at the first `"` followed by as many `#`.
    fn raw_string(&mut self) -> Option<Cow<'a, str>> {
        let save = self.i;
        let mut j = self.i + 1;
        while self.b.get(j) == Some(&b'#') {
            j += 1;
        }
        let hashes = j - self.i - 1;
        if self.b.get(j) != Some(&b'"') {
            return None;
        }
        let body = j + 1;
        let mut k = body;
        while k < self.b.len() {
            if self.b[k] == b'"'
                && self.b.len() >= k + 1 + hashes
                && self.b[k + 1..k + 1 + hashes].iter().all(|&h| h == b'#')
            {
                self.i = k + 1 + hashes;
                return Some(Cow::Borrowed(&self.s[body..k]));
            }
            k += 1;
        }
        self.i = save;
        None
    }

    fn escaped_string(&mut self) -> Option<Cow<'a, str>> {
        let save = self.i;
        let body = self.i + 1;
        let mut k = body;
        // Fast scan: no escape until the closing quote → borrow.
        while k < self.b.len() {
            match self.b[k] {
                b'"' => {
                    self.i = k + 1;
                    return Some(Cow::Borrowed(&self.s[body..k]));
                }
                b'\\' => break,
                _ => k += 1,
            }
        }
        let mut out = String::with_capacity(k - body + 16);
        out.push_str(&self.s[body..k.min(self.b.len())]);
        self.i = k;
        loop {
            match self.byte() {
                None => {
                    self.i = save;
                    return None;
                }
                Some(b'"') => {
                    self.i += 1;
                    return Some(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = match self.byte() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.i += 1;
                            match self.unicode_escape() {
                                Some(c) => {
                                    out.push(c);
                                    continue;
                                }
                                None => {
                                    // knuffel recovers and reports it
                                    self.bad = true;
                                    self.i = save;
                                    return None;
                                }
                            }
                        }
                        _ => {
                            self.i = save;
                            return None;
                        }
                    };
                    self.i += 1;
                    out.push(c);
                }
                Some(_) => {
                    let start = self.i;
                    self.i += 1;
                    while let Some(c) = self.byte() {
                        if c == b'"' || c == b'\\' {
                            break;
                        }
                        self.i += 1;
                    }
                    out.push_str(&self.s[start..self.i]);
                }
            }
        }
    }

    /// After `\u`: `{` 1–6 hex digits `}` naming a char.
    fn unicode_escape(&mut self) -> Option<char> {
        if self.byte() != Some(b'{') {
            return None;
        }
        let start = self.i + 1;
        let mut k = start;
        while k < self.b.len() && k - start < 6 && self.b[k].is_ascii_hexdigit() {
            k += 1;
        }
        if k == start || self.b.get(k) != Some(&b'}') {
            return None;
        }
        let n = u32::from_str_radix(&self.s[start..k], 16).ok()?;
        let c = char::from_u32(n)?;
        self.i = k + 1;
        Some(c)
    }

    fn number(&mut self) -> Option<Lit<'a>> {
        let start = self.i;
        let signed = matches!(self.byte(), Some(b'+') | Some(b'-'));
        let d0 = start + usize::from(signed);
        // radix: sign? 0 (b|o|x) digit (digit|_)*
        if self.b.get(d0) == Some(&b'0') {
            let radix = match self.b.get(d0 + 1) {
                Some(b'b') => Some((Radix::Bin, 2)),
                Some(b'o') => Some((Radix::Oct, 8)),
                Some(b'x') => Some((Radix::Hex, 16)),
                _ => None,
            };
            if let Some((radix, base)) = radix {
                let first = d0 + 2;
                let is_digit = |c: u8| (c as char).is_digit(base);
                if self.b.get(first).is_some_and(|&c| is_digit(c)) {
                    let mut k = first + 1;
                    while k < self.b.len() && (self.b[k] == b'_' || is_digit(self.b[k])) {
                        k += 1;
                    }
                    self.i = k;
                    let digits = &self.s[first..k];
                    let text = if signed || digits.contains('_') {
                        let mut s = String::with_capacity(k - first + 1);
                        if signed {
                            s.push(self.b[start] as char);
                        }
                        s.extend(digits.chars().filter(|&c| c != '_'));
                        Cow::Owned(s)
                    } else {
                        Cow::Borrowed(digits)
                    };
                    return Some(Lit::Int(radix, text));
                }
            }
        }
        // decimal: sign? digit (digit|_)* ('.' digit (digit|_)*)? ([eE] sign? (digit|_)*)?
        if !self.b.get(d0).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let digits = |b: &[u8], mut k: usize| {
            while k < b.len() && (b[k] == b'_' || b[k].is_ascii_digit()) {
                k += 1;
            }
            k
        };
        let mut k = digits(self.b, d0 + 1);
        let mut decimal = false;
        if self.b.get(k) == Some(&b'.') && self.b.get(k + 1).is_some_and(u8::is_ascii_digit) {
            k = digits(self.b, k + 2);
            decimal = true;
        }
        if matches!(self.b.get(k), Some(b'e') | Some(b'E')) {
            k += 1;
            if matches!(self.b.get(k), Some(b'+') | Some(b'-')) {
                k += 1;
            }
            k = digits(self.b, k);
            decimal = true;
        }
        self.i = k;
        let raw = &self.s[start..k];
        let text = if raw.contains('_') {
            Cow::Owned(raw.chars().filter(|&c| c != '_').collect())
        } else {
            Cow::Borrowed(raw)
        };
        Some(if decimal {
            Lit::Decimal(text)
        } else {
            Lit::Int(Radix::Dec, text)
        })
    }
}

enum Item<'a> {
    Arg(Value<'a>),
    Prop(Prop<'a>),
    Ignore,
}

// ---- knuffel's tree → ours (slow path, differential tests) ----

type KSpan = knuffel::span::Span;

fn kloc(s: &KSpan) -> Loc {
    Loc::new(s.0, s.1)
}

/// Convert knuffel's document.
pub fn from_knuffel(doc: &knuffel::ast::Document<KSpan>) -> Document<'static> {
    Document {
        nodes: doc.nodes.iter().map(node_from_knuffel).collect(),
    }
}

/// Convert one knuffel node (with its children).
pub fn node_from_knuffel(n: &knuffel::ast::SpannedNode<KSpan>) -> Node<'static> {
    let tn = |t: &Option<knuffel::span::Spanned<knuffel::ast::TypeName, KSpan>>| {
        t.as_ref()
            .map(|t| (Cow::Owned(t.as_str().to_string()), kloc(t.span())))
    };
    Node {
        span: kloc(n.span()),
        type_name: tn(&n.type_name),
        name: Cow::Owned(n.node_name.to_string()),
        name_span: kloc(n.node_name.span()),
        args: n
            .arguments
            .iter()
            .map(|v| value_from_knuffel(v, tn(&v.type_name)))
            .collect(),
        props: n
            .properties
            .iter()
            .map(|(k, v)| Prop {
                key: Cow::Owned(k.to_string()),
                key_span: kloc(k.span()),
                value: value_from_knuffel(v, tn(&v.type_name)),
            })
            .collect(),
        children: n.children.as_ref().map(|c| Children {
            span: kloc(c.span()),
            nodes: c.iter().map(node_from_knuffel).collect(),
        }),
    }
}

fn value_from_knuffel(
    v: &knuffel::ast::Value<KSpan>,
    type_name: Option<(Cow<'static, str>, Loc)>,
) -> Value<'static> {
    Value {
        type_name,
        lit: lit_from_knuffel(&v.literal),
        span: kloc(v.literal.span()),
    }
}

/// Convert a literal. knuffel's number types keep their fields private;
/// their `Debug` form (`Integer(Hex, "ff")`, `Decimal("1.5")`) has them.
pub fn lit_from_knuffel(l: &knuffel::ast::Literal) -> Lit<'static> {
    use knuffel::ast::Literal as L;
    match l {
        L::Null => Lit::Null,
        L::Bool(b) => Lit::Bool(*b),
        L::String(s) => Lit::Str(Cow::Owned(s.to_string())),
        L::Int(i) => {
            let d = format!("{i:?}");
            let radix = if d.starts_with("Integer(Bin") {
                Radix::Bin
            } else if d.starts_with("Integer(Oct") {
                Radix::Oct
            } else if d.starts_with("Integer(Hex") {
                Radix::Hex
            } else {
                Radix::Dec
            };
            Lit::Int(radix, Cow::Owned(debug_str(&d)))
        }
        L::Decimal(x) => Lit::Decimal(Cow::Owned(debug_str(&format!("{x:?}")))),
    }
}

/// The quoted part of a `Debug` form (numbers only: no escapes).
fn debug_str(d: &str) -> String {
    let a = d.find('"').map_or(0, |a| a + 1);
    let b = d.rfind('"').unwrap_or(d.len()).max(a);
    d[a..b].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both parsers on one text: same verdict, same tree.
    fn same(text: &str) {
        let ours = parse(text);
        let theirs = knuffel::parse_ast::<KSpan>("t.kdl", text);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, &from_knuffel(b), "tree differs for {text:?}"),
            (Err(Rejected), Err(_)) => {}
            _ => panic!(
                "verdict differs for {text:?}: ours {:?}, knuffel {:?}",
                ours.is_ok(),
                theirs.is_ok()
            ),
        }
    }

    #[test]
    fn agrees_with_knuffel() {
        for t in [
            "",
            "a",
            "a\n",
            "a;b;c",
            "a 1 2 3\n",
            "\u{feff}a \"x\"\n",
            "a {\n  b 1\n}\n",
            "a { b 1; }\n",
            "a { b 1 }\n",
            "a{}\n",
            "a {} b\n",
            "a {}\nb\n",
            "a /-{ x; } \n",
            "a /-{ x; } { y; }\n",
            "/-a 1\nb 2\n",
            "/- a 1\nb 2\n",
            "a /-1 2 /- k=3 k=4 k=5\n",
            "a k=1 j=2 k=3 \"a b\"=4\n",
            "a \"k\"=1 r\"j\"=2\n",
            "a true=1\n",
            "a null\n",
            "a nullx\n",
            "a nul=1\n",
            "a nullx=1\n",
            "a truex=1\n",
            "a -x=1 +y=2 -=3\n",
            "a -1=2\n",
            "a 1=2\n",
            "a bare\n",
            "a k=bare\n",
            "a k=\n",
            "a 0x1f 0o17 0b101 -0x_1 0x 0b2 1_000 1.5 1.5e3 1e 1E+ 1e-_5 +7 -0\n",
            "a 1.\n",
            "a 1.e5\n",
            "a 0x1g\n",
            "a 1abc\n",
            "a 123456789012345678901234567890\n",
            "a (t)1 (\"q r\")\"x\" k=(u)true\n",
            "(t)a 1\n",
            "(t) a 1\n",
            "a (t) 1\n",
            "(1)a\n",
            "a (t)k=1\n",
            "\"quoted name\" 1\n",
            "r\"raw\" 1\n",
            "r#\"x\"# 1\n",
            "a r\"\\n\" r#\"a\"b\"# r##\"x\"#y\"## r\"a\"#\n",
            "a r#\"unclosed\n",
            "a \"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u{41}\\u{1F600}\"\n",
            "a \"\\u{}\"\n",
            "a \"\\u{1234567}\"\n",
            "a \"\\u{D800}\"\n",
            "a \"\\u{110000}\"\n",
            "a \"\\u41\"\n",
            "a \"\\q\"\n",
            "a \"multi\nline\"\n",
            "a \"unclosed\n",
            "a \\\n  1\n",
            "a \\ // c\n  1\n",
            "a \\ x\n",
            "a // c\nb\n",
            "a /* c */ 1 /* d /* e */ */ 2\n",
            "a /* c\n",
            "/*/*/ a\n",
            "/* /* */ a\n",
            "a 1 // end",
            "a 1 ;b 2",
            "a 1;\r\nb 2\r\n",
            "a 1\u{85}b 2\u{2028}c\u{2029}d\u{c}e\r",
            "a\u{a0}1\u{3000}2\n",
            "a\u{feff}b 1\n",
            "a! 1\n",
            "!a 1\n",
            "a-b.c_d 1\n",
            "- 1\n",
            "+ 1\n",
            "-1 1\n",
            "--x 1\n",
            "-.5 1\n",
            "true 1\n",
            "truex 1\n",
            "a\tb\n",
            "a b=\"x\"c\n",
            "a \"x\"\"y\"\n",
            "a 1{}\n",
            "a {\n",
            "}\n",
            "a { b { c 1; }; }\n",
            "a { b { c 1; } }\n",
            "a { /- b 1\n c 2 }\n",
            "a {\n  /-b { c }\n}\n",
            "a; /-b\n",
            "/-\n",
            "a /-\n",
            "a =1\n",
            "a k==1\n",
            "a \"é\" é=\"ü\" ü\n",
            "a (é)\"x\"\n",
            "a \\\r\n 1\n",
            "a 1 \\",
            "a 1 \\\n",
        ] {
            same(t);
        }
    }

    /// Parsing in parts gives the whole document's nodes, or `Err` for a
    /// part whose end is not a top-level node boundary.
    #[test]
    fn parts_put_together_are_the_document() {
        let mut text = String::from("variable \"V\" default=\"x\"\n");
        for i in 0..40 {
            text.push_str(&format!(
                "target \"t{i}\" {{\n    tags \"a\" \"b\"\n    arg \"K\" \"\\n{i}\"\n}}\n"
            ));
            if i % 7 == 0 {
                text.push_str("// comment\n/* block\n   comment */\n");
            }
            if i % 9 == 0 {
                text.push_str("string \"two\n lines\"\n/-dashed {\n    x 1\n}\n");
            }
        }
        let whole = parse(&text).unwrap();
        // The cut points are guesses that hold for this layout.
        for parts in 1..12 {
            let cuts = cut_points(&text, parts);
            assert!(cuts.len() < parts.max(1), "{cuts:?}");
            let mut nodes = Vec::new();
            let mut start = 0;
            for end in cuts.iter().copied().chain([text.len()]) {
                nodes.extend(parse_part(&text, start, end).unwrap().nodes);
                start = end;
            }
            assert_eq!(nodes, whole.nodes, "{parts} parts cut at {cuts:?}");
        }
        // Every offset: a part ends on a node boundary or is refused.
        for end in 0..text.len() {
            if !text.is_char_boundary(end) {
                continue;
            }
            let Ok(first) = parse_part(&text, 0, end) else {
                continue;
            };
            let rest = parse_part(&text, end, text.len()).unwrap();
            let mut nodes = first.nodes;
            nodes.extend(rest.nodes);
            assert_eq!(nodes, whole.nodes, "cut at {end}");
        }
        // A rejected text is rejected in parts too.
        let bad = format!("{text}target \"x\" {{ a 1 }}\n");
        let cut = cut_points(&bad, 2)[0];
        assert!(parse_part(&bad, 0, cut).is_ok());
        assert_eq!(parse_part(&bad, cut, bad.len()), Err(Rejected));
    }

    #[test]
    fn borrows_plain_strings() {
        let d = parse("a \"x\" k=\"y\"\n").unwrap();
        assert!(matches!(
            d.nodes[0].args[0].lit,
            Lit::Str(Cow::Borrowed("x"))
        ));
    }
}
