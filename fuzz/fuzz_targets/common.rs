//! Shared driver for the fuzz targets: one build file through the whole
//! pipeline, load → resolve → select → plan, rendering every diagnostic.
//! Any panic, hang (> -timeout) or runaway allocation (> -rss_limit_mb) is a
//! finding; diagnostics are the expected answer to bad input.

use std::collections::HashMap;
use std::path::PathBuf;

use mybake::diag::{render, render_short, Diagnostics, RenderOptions};
use mybake::load;
use mybake::plan;
use mybake::resolve::{self, ResolveOptions};
use mybake::source::Sources;

/// Cap on the per-target `select`+`plan` passes, so that a file with very
/// many (matrix-expanded) targets does not turn the harness itself
/// quadratic. `select(&[])`, i.e. group `default`, always runs.
const MAX_PER_TARGET_PLANS: usize = 32;

fn render_all(d: &Diagnostics, sources: &Sources) {
    let out = render(d, sources, RenderOptions::default());
    assert!(out.contains("in the build configuration"), "render lost its count line");
    let _ = render_short(d, sources);
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
    let Ok(text) = std::str::from_utf8(data) else { return };
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
            }
            Err(d) => render_all(&d, &sources),
        }
    }
}
