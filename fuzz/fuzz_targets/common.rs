//! Shared driver for the fuzz targets: one build file through the whole
//! pipeline, load → resolve → select → plan → reports, rendering every
//! diagnostic. Any panic, hang (> -timeout) or runaway allocation
//! (> -rss_limit_mb) is a finding; diagnostics are the expected answer to
//! bad input. Checked on the way: every diagnostic is located (has a span
//! in the file) when the input is a file at all, and no rendered
//! diagnostic or report contains a raw control character.

use std::collections::HashMap;
use std::path::PathBuf;

use mybake::diag::{is_hostile_char, render, render_short, Diagnostics, RenderOptions};
use mybake::load;
use mybake::plan;
use mybake::report;
use mybake::resolve::{self, ResolveOptions};
use mybake::source::Sources;

/// Cap on the per-target `select`+`plan` passes, so that a file with very
/// many (matrix-expanded) targets does not turn the harness itself
/// quadratic. `select(&[])`, i.e. group `default`, always runs.
const MAX_PER_TARGET_PLANS: usize = 32;

/// No control character but newline (and tab, which the snippets keep
/// from the file), no DEL, C1 control or bidi override.
fn assert_clean(out: &str, what: &str) {
    if let Some(c) = out.chars().find(|&c| is_hostile_char(c) && c != '\n' && c != '\t') {
        panic!("raw {c:?} in {what}: {out:?}");
    }
}

fn render_all(d: &Diagnostics, sources: &Sources) {
    let out = render(d, sources, RenderOptions::default());
    assert!(out.contains("in the build configuration"), "render lost its count line");
    assert_clean(&out, "render");
    let short = render_short(d, sources);
    assert_clean(&short, "render_short");
    // Every problem found in a file points into it (not: "no default
    // group", which is about what the file lacks).
    let unlocated = |d: &&mybake::diag::Diag| {
        d.code != "mybake::select::no-default" && d.span().is_none_or(|s| s.is_none())
    };
    assert!(d.items.iter().find(unlocated).is_none(), "a diagnostic without a location: {:?}", d.items.iter().find(unlocated));
}

fn options() -> ResolveOptions {
    let mut env = HashMap::new();
    env.insert("HOME".to_string(), "/fuzz/home".to_string());
    ResolveOptions {
        cwd: PathBuf::from("/fuzz"),
        vars: Vec::new(),
        env,
        sets: Vec::new(),
        local_platform: "linux/amd64".to_string(),
    }
}

/// `load::decode_file` only, rendering what it reports.
#[allow(dead_code)]
pub fn load_only(text: &str) {
    let mut sources = Sources::default();
    let id = sources.add("fuzz.kdl".to_string(), PathBuf::from("/fuzz/mybake.kdl"), text.to_string());
    let mut diags = Diagnostics::default();
    let _ = load::decode_file(id, "fuzz.kdl", text, &mut diags);
    if !diags.is_empty() {
        render_all(&diags, &sources);
    }
}

#[allow(dead_code)]
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        // Not UTF-8: the load stage's diagnostic, at the first bad byte.
        let mut sources = Sources::default();
        let (text, d) = load::not_utf8(0, data.to_vec());
        sources.add("fuzz.kdl".to_string(), PathBuf::from("/fuzz/mybake.kdl"), text);
        let at = d.span().map(|s| s.start as usize);
        assert_eq!(at, std::str::from_utf8(data).err().map(|e| e.valid_up_to()));
        render_all(&d.into(), &sources);
        return;
    };
    let mut sources = Sources::default();
    let id = sources.add("fuzz.kdl".to_string(), PathBuf::from("/fuzz/mybake.kdl"), text.to_string());

    // load
    let mut diags = Diagnostics::default();
    let decls = load::decode_file(id, "fuzz.kdl", text, &mut diags);
    if !diags.is_empty() {
        render_all(&diags, &sources);
        return;
    }

    // resolve
    let opts = options();
    let r = match resolve::resolve(&[decls], &mut sources, &opts) {
        Ok(r) => r,
        Err(d) => {
            render_all(&d, &sources);
            return;
        }
    };

    // The reports that show the whole configuration.
    assert_clean(&report::list::targets_text(&r), "list targets");
    assert_clean(&report::list::targets_json(&r), "list targets --format json");
    assert_clean(&report::list::variables_text(&r, &sources), "list variables");
    assert_clean(&report::list::variables_json(&r), "list variables --format json");

    // select + plan: the default request, then each target by name.
    let mut requests: Vec<Vec<String>> = vec![Vec::new()];
    requests.extend(r.targets.iter().take(MAX_PER_TARGET_PLANS).map(|t| vec![t.name.v.clone()]));
    for req in &requests {
        let sel = match resolve::select(&r, req) {
            Ok(s) => s,
            Err(d) => {
                render_all(&d, &sources);
                continue;
            }
        };
        match plan::plan(&r, &sel) {
            Ok(p) => {
                // Cheap consistency checks on the plan's own invariants.
                assert_eq!(p.order.len(), p.graph.node_count(), "order must list every node once");
                let _ = p.builds();
                assert_clean(&report::plan::text(&p), "plan");
                assert_clean(&report::print::print(&r, &sel), "print");
            }
            Err(d) => render_all(&d, &sources),
        }
    }
}
