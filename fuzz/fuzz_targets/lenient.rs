//! `lenient`: the one-line-block patch that `load` applies before knuffel
//! (`src/load/lenient.rs`, `scan(..).patched`).
//!
//! The function lives in a private module (`mybake::load::lenient`), so the
//! harness compiles that very source file into itself with `#[path]`
//! (src/ is not modified), checks its contract directly, and then runs the
//! input through the public `load::decode_file`, which applies the same
//! patch, rendering its diagnostics (the `pipeline` target goes further).
//!
//! Properties:
//! 1. the patched text has the same length, and differs only where a space
//!    or tab right before a `}` became `;` (so spans stay valid);
//! 2. the patch never breaks or changes valid KDL: if knuffel accepts the
//!    original text, it accepts the patched text and yields the same
//!    document (compared without spans).
#![no_main]

use std::fmt::Write;

use knuffel::ast::{Document, Node, Value};
use knuffel::span::Span;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/load/lenient.rs"]
mod lenient;

#[path = "common.rs"]
mod common;

fn value(out: &mut String, v: &Value<Span>) {
    if let Some(t) = &v.type_name {
        let _ = write!(out, "({:?})", **t);
    }
    let _ = write!(out, "{:?}", *v.literal);
}

fn node(out: &mut String, n: &Node<Span>) {
    if let Some(t) = &n.type_name {
        let _ = write!(out, "({:?})", **t);
    }
    let _ = write!(out, "{:?}", &**n.node_name);
    for a in &n.arguments {
        out.push(' ');
        value(out, a);
    }
    for (k, v) in &n.properties {
        let _ = write!(out, " {:?}=", &***k);
        value(out, v);
    }
    if let Some(ch) = &n.children {
        out.push_str(" {");
        for c in ch.iter() {
            node(out, c);
            out.push(';');
        }
        out.push('}');
    }
}

fn shape(d: &Document<Span>) -> String {
    let mut s = String::new();
    for n in &d.nodes {
        node(&mut s, n);
        s.push('\n');
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(p) = lenient::scan(text).patched {
        // 1. same length, only ` `/`\t` before `}` → `;`.
        assert_eq!(p.len(), text.len(), "patch changed the length");
        for (i, (a, b)) in text.bytes().zip(p.bytes()).enumerate() {
            if a != b {
                assert!(matches!(a, b' ' | b'\t') && b == b';', "byte {i}: {a:#x} -> {b:#x}");
                assert_eq!(text.as_bytes().get(i + 1), Some(&b'}'), "byte {i} patched but not before `}}`");
            }
        }
        // 2. valid KDL stays valid and means the same.
        if let Ok(orig) = knuffel::parse_ast::<Span>("fuzz.kdl", text) {
            match knuffel::parse_ast::<Span>("fuzz.kdl", &p) {
                Ok(patched) => assert_eq!(shape(&orig), shape(&patched), "patch changed the meaning of valid KDL\noriginal: {text:?}\npatched:  {p:?}"),
                Err(e) => panic!("patch broke valid KDL: {e}\noriginal: {text:?}\npatched:  {p:?}"),
            }
        }
    }
    // The same input through `decode_file` (which applies the patch).
    common::load_only(text);
});
