use super::*;
use crate::resolve::{select, tests_support::run};
use proptest::prelude::*;

fn plan_of(text: &str, names: &[&str]) -> Result<(Resolved, Plan), Vec<String>> {
    let r = run(text).map_err(|d| d.items.into_iter().map(|d| d.message).collect::<Vec<_>>())?;
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let sel = select(&r, &names)
        .map_err(|d| d.items.into_iter().map(|d| d.message).collect::<Vec<_>>())?;
    let p =
        plan(&r, &sel).map_err(|d| d.items.into_iter().map(|d| d.message).collect::<Vec<_>>())?;
    Ok((r, p))
}

fn ids(p: &Plan, v: &[NodeIndex]) -> Vec<String> {
    v.iter().map(|&i| p.node(i).id.clone()).collect()
}

#[test]
fn spec_example() {
    let (_, p) = plan_of(
        "target \"base\" { }\ntarget \"app\" {\n contexts {\n base \"target:base\"\n }\n}\n",
        &["app"],
    )
    .unwrap();
    assert_eq!(
        ids(&p, &p.order),
        ["base@linux/amd64", "app@linux/amd64", "app"]
    );
    assert_eq!(
        ids(&p, &p.critical_path),
        ["base@linux/amd64", "app@linux/amd64", "app"]
    );
    assert_eq!(p.levels.len(), 3);
}

#[test]
fn per_platform_edges_and_narrowed_dependency() {
    let kdl = r#"
target "base" { platforms "linux/amd64" "linux/arm64" "linux/arm/v7"; }
target "app" { platforms "linux/arm64" "linux/amd64"; contexts { base "target:base"; }; }
"#;
    let (_, p) = plan_of(kdl, &["app"]).unwrap();
    let mut edges: Vec<String> = p
        .graph
        .edge_indices()
        .map(|e| {
            let (a, b) = p.graph.edge_endpoints(e).unwrap();
            format!("{} -> {}", p.node(a).id, p.node(b).id)
        })
        .collect();
    edges.sort();
    assert_eq!(
        edges,
        [
            "app -> app@linux/amd64",
            "app -> app@linux/arm64",
            "app@linux/amd64 -> base@linux/amd64",
            "app@linux/arm64 -> base@linux/arm64",
        ]
    );
    // base is narrowed to what app needs (no arm/v7), in base's own order.
    assert_eq!(p.platforms.values().map(|v| v.len()).sum::<usize>(), 4);
    assert!(
        !p.graph.node_weights().any(|n| n.id == "base"),
        "dependency not requested: no merge node"
    );
}

#[test]
fn missing_platform_names_both_targets() {
    let e = plan_of("target \"base\" { platforms \"linux/amd64\"; }\ntarget \"app\" { platforms \"linux/amd64\" \"linux/arm64\"; contexts { b \"target:base\"; }; }\n", &["app"]).unwrap_err();
    assert_eq!(
        e,
        ["`app` needs `base` for linux/arm64, but `base` is not built for it"]
    );
}

/// Issue 12 defect 1: platforms compare normalised, as publish does. The
/// dependency is built once per platform, under its own spelling, whether
/// or not it is requested too.
#[test]
fn platforms_compare_normalised() {
    let kdl = r#"
target "base" { platforms "linux/arm/v7" "linux/arm64/v8"; }
target "app" { platforms "linux/arm" "linux/arm64"; contexts { base "target:base"; }; }
"#;
    for names in [&["app"][..], &["app", "base"][..]] {
        let (_, p) = plan_of(kdl, names).unwrap();
        let mut edges: Vec<String> = p
            .graph
            .edge_indices()
            .map(|e| {
                let (a, b) = p.graph.edge_endpoints(e).unwrap();
                format!("{} -> {}", p.node(a).id, p.node(b).id)
            })
            .filter(|e| e.starts_with("app@"))
            .collect();
        edges.sort();
        assert_eq!(
            edges,
            [
                "app@linux/arm -> base@linux/arm/v7",
                "app@linux/arm64 -> base@linux/arm64/v8",
            ],
            "{names:?}"
        );
        let base: Vec<&str> = p
            .graph
            .node_weights()
            .filter(|n| n.target_name == "base" && n.is_build())
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(base.len(), 2, "{names:?}: {base:?}");
    }
    // Different variants stay different platforms.
    let e = plan_of(
        "target \"base\" { platforms \"linux/arm/v6\"; }\ntarget \"app\" { platforms \"linux/arm\"; contexts { b \"target:base\"; }; }\n",
        &["app"],
    )
    .unwrap_err();
    assert_eq!(
        e,
        ["`app` needs `base` for linux/arm, but `base` is not built for it"]
    );
}

fn build_ids(p: &Plan, target: &str) -> Vec<String> {
    p.order
        .iter()
        .map(|&i| p.node(i))
        .filter(|n| n.target_name == target && n.is_build())
        .map(|n| n.id.clone())
        .collect()
}

fn edge_list(p: &Plan) -> Vec<String> {
    let mut edges: Vec<String> = p
        .graph
        .edge_indices()
        .map(|e| {
            let (a, b) = p.graph.edge_endpoints(e).unwrap();
            format!("{} -> {}", p.node(a).id, p.node(b).id)
        })
        .collect();
    edges.sort();
    edges
}

/// Issue 15: a dependency that declares no platforms is built for the
/// platforms its dependents need (bake), through a chain of them too.
#[test]
fn platformless_dependency_takes_its_dependents_platforms() {
    let kdl = r#"
target "base" { }
target "mid" { contexts { base "target:base"; }; }
target "app" { platforms "linux/amd64" "linux/arm64"; contexts { mid "target:mid"; base "target:base"; }; }
target "tool" { platforms "linux/arm/v7"; contexts { base "target:base"; }; }
"#;
    let (_, p) = plan_of(kdl, &["app"]).unwrap();
    assert_eq!(
        build_ids(&p, "base"),
        ["base@linux/amd64", "base@linux/arm64"]
    );
    assert_eq!(build_ids(&p, "mid"), ["mid@linux/amd64", "mid@linux/arm64"]);
    assert!(edge_list(&p).contains(&"mid@linux/arm64 -> base@linux/arm64".to_string()));
    assert!(!p
        .graph
        .node_weights()
        .any(|n| n.id == "base" || n.id == "mid"));
    // Two dependents: the union of what they need, once each.
    let (_, p) = plan_of(kdl, &["app", "tool"]).unwrap();
    assert_eq!(
        build_ids(&p, "base"),
        ["base@linux/amd64", "base@linux/arm/v7", "base@linux/arm64"]
    );
    // Requested itself: its native platform, and what its dependents need.
    let (_, p) = plan_of(kdl, &["tool", "base"]).unwrap();
    assert_eq!(
        build_ids(&p, "base"),
        ["base@linux/amd64", "base@linux/arm/v7"]
    );
    let merge = p
        .graph
        .node_indices()
        .find(|&i| p.node(i).id == "base")
        .unwrap();
    assert_eq!(p.needs(merge).len(), 2);
    // Alone it is built for the native platform only.
    let (_, p) = plan_of(kdl, &["base"]).unwrap();
    assert_eq!(build_ids(&p, "base"), ["base@linux/amd64"]);
}

/// `platforms "local"` is the builder's native platform in the plan
/// (`print` keeps `local`, as bake does).
#[test]
fn local_platform_is_native() {
    let (r, p) = plan_of(
        "target \"a\" { platforms \"local\" \"linux/arm64\"; }\ntarget \"b\" { platforms \"linux/amd64\" \"local\"; }\n",
        &["a", "b"],
    )
    .unwrap();
    assert_eq!(build_ids(&p, "a"), ["a@linux/amd64", "a@linux/arm64"]);
    assert_eq!(build_ids(&p, "b"), ["b@linux/amd64"]);
    assert_eq!(r.target("a").unwrap().platforms()[0].v, "local");
    assert_eq!(target_platforms(&r, 0), ["linux/amd64", "linux/arm64"]);
    // A dependency declaring `local` serves a dependent on the native one.
    let (_, p) = plan_of(
        "target \"base\" { platforms \"local\"; }\ntarget \"app\" { platforms \"linux/amd64\"; contexts { b \"target:base\"; }; }\n",
        &["app"],
    )
    .unwrap();
    assert_eq!(edge_list(&p)[1], "app@linux/amd64 -> base@linux/amd64");
}

#[test]
fn cycle_is_a_path() {
    let e = plan_of("target \"a\" { contexts { x \"target:b\"; }; }\ntarget \"b\" { contexts { y \"target:a\"; }; }\n", &["a"]).unwrap_err();
    assert_eq!(e, ["dependency cycle: a -> b -> a"]);
}

/// A random target graph: edges only as given (may contain cycles).
fn arb_graph() -> impl Strategy<Value = (usize, Vec<(usize, usize)>, Vec<u8>)> {
    (1usize..8).prop_flat_map(|n| {
        (
            Just(n),
            proptest::collection::vec((0..n, 0..n), 0..12),
            proptest::collection::vec(0u8..4, n),
        )
    })
}

const PLATS: [&str; 2] = ["linux/amd64", "linux/arm64"];

fn kdl(n: usize, edges: &[(usize, usize)], plats: &[u8]) -> String {
    let mut s = String::new();
    for (i, mask) in plats.iter().enumerate().take(n) {
        s.push_str(&format!("target \"t{i}\" {{\n"));
        let ps: Vec<String> = PLATS
            .iter()
            .enumerate()
            .filter(|(k, _)| mask & (1 << k) != 0)
            .map(|(_, p)| format!("\"{p}\""))
            .collect();
        // Mask 0: no platforms (built for what its dependents need).
        if !ps.is_empty() {
            s.push_str(&format!("  platforms {}\n", ps.join(" ")));
        }
        let deps: Vec<usize> = edges
            .iter()
            .filter(|(a, _)| *a == i)
            .map(|(_, b)| *b)
            .collect();
        if !deps.is_empty() {
            s.push_str("  contexts {\n");
            let mut seen = Vec::new();
            for d in deps {
                if !seen.contains(&d) {
                    seen.push(d);
                    s.push_str(&format!("    d{d} \"target:t{d}\"\n"));
                }
            }
            s.push_str("  }\n");
        }
        s.push_str("}\n");
    }
    s
}

fn has_cycle(n: usize, edges: &[(usize, usize)]) -> bool {
    // Floyd–Warshall reachability.
    let mut r = vec![vec![false; n]; n];
    for &(a, b) in edges {
        r[a][b] = true;
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                if r[i][k] && r[k][j] {
                    r[i][j] = true;
                }
            }
        }
    }
    (0..n).any(|i| r[i][i])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// `validate` (what `print` runs) accepts and rejects exactly what
    /// `plan` does, with the same diagnostics.
    #[test]
    fn validate_agrees_with_plan((n, edges, plats) in arb_graph()) {
        let text = kdl(n, &edges, &plats);
        let r = run(&text).expect("the generated file resolves");
        let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let sel = select(&r, &names).expect("every name exists");
        let msgs = |d: Diagnostics| d.items.into_iter().map(|d| d.message).collect::<Vec<_>>();
        let planned = plan(&r, &sel).map(|_| ()).map_err(msgs);
        let validated = validate(&r, &sel).map_err(msgs);
        prop_assert_eq!(planned, validated);
    }

    #[test]
    fn planner_properties((n, edges, plats) in arb_graph()) {
        let text = kdl(n, &edges, &plats);
        let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match plan_of(&text, &names) {
            Err(e) => {
                // Only cycles or platform gaps may fail.
                let cyc = has_cycle(n, &edges);
                prop_assert!(e.iter().all(|m| m.starts_with("dependency cycle") || m.contains("is not built for")), "{e:?}");
                if !cyc { prop_assert!(e.iter().all(|m| m.contains("is not built for"))); }
            }
            Ok((r, p)) => {
                prop_assert!(!has_cycle(n, &edges), "cycle accepted");
                let pos: HashMap<NodeIndex, usize> = p.order.iter().enumerate().map(|(k, &i)| (i, k)).collect();
                prop_assert_eq!(pos.len(), p.graph.node_count());
                for e in p.graph.edge_indices() {
                    let (a, b) = p.graph.edge_endpoints(e).unwrap();
                    // Topological: needs come first.
                    prop_assert!(pos[&b] < pos[&a]);
                    let (na, nb) = (p.node(a), p.node(b));
                    if na.is_build() {
                        // Per-platform edges only.
                        prop_assert_eq!(na.platform(), nb.platform());
                        prop_assert!(r.targets[na.target].deps.iter().any(|(_, d)| d.v == nb.target_name));
                    } else {
                        prop_assert_eq!(na.target, nb.target);
                    }
                }
                // Every dependency edge of the input appears for every platform.
                for &(a, b) in &edges {
                    for pl in p.platforms.get(&r.index[&format!("t{a}")]).into_iter().flatten() {
                        let ida = format!("t{a}@{pl}");
                        let idb = format!("t{b}@{pl}");
                        let ia = p.graph.node_indices().find(|&i| p.node(i).id == ida).unwrap();
                        let ib = p.graph.node_indices().find(|&i| p.node(i).id == idb);
                        prop_assert!(ib.is_some_and(|ib| p.graph.contains_edge(ia, ib)), "missing {ida} -> {idb}");
                    }
                }
                // The critical path is a chain of needs.
                for w in p.critical_path.windows(2) {
                    prop_assert!(p.graph.contains_edge(w[1], w[0]));
                }
                let longest = p.levels.len();
                prop_assert_eq!(p.critical_path.len(), longest);
            }
        }
    }
}
