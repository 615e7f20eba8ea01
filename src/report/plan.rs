//! `mybake plan`: the DAG as text, Graphviz dot, or JSON.

use serde_json::{json, Value as J};

use crate::plan::{NodeKind, Plan};

pub fn json(p: &Plan) -> String {
    let nodes: Vec<J> = p
        .order
        .iter()
        .map(|&i| {
            let n = p.node(i);
            match &n.kind {
                NodeKind::Build { platform } => json!({ "id": n.id, "kind": "build", "target": n.target_name, "platform": platform, "publish": n.publish }),
                NodeKind::Merge => json!({ "id": n.id, "kind": "merge", "target": n.target_name }),
            }
        })
        .collect();
    let mut edges = Vec::new();
    for &i in &p.order {
        for d in p.needs(i) {
            edges.push(json!({ "node": p.node(i).id, "needs": p.node(d).id }));
        }
    }
    let levels: Vec<Vec<&str>> = p
        .levels
        .iter()
        .map(|l| l.iter().map(|&i| p.node(i).id.as_str()).collect())
        .collect();
    let critical: Vec<&str> = p
        .critical_path
        .iter()
        .map(|&i| p.node(i).id.as_str())
        .collect();
    let doc =
        json!({ "nodes": nodes, "edges": edges, "levels": levels, "critical_path": critical });
    // Names and platforms are validated; this keeps the rule in one place.
    let mut s =
        crate::diag::escape_json_extra(serde_json::to_string_pretty(&doc).unwrap_or_default());
    s.push('\n');
    s
}

pub fn text(p: &Plan) -> String {
    let builds = p.builds();
    let merges = p.graph.node_count() - builds;
    let mut s = format!(
        "{} nodes ({} build{}, {} merge{}) in {} level{}; critical path {} node{}\n",
        p.graph.node_count(),
        builds,
        if builds == 1 { "" } else { "s" },
        merges,
        if merges == 1 { "" } else { "s" },
        p.levels.len(),
        if p.levels.len() == 1 { "" } else { "s" },
        p.critical_path.len(),
        if p.critical_path.len() == 1 { "" } else { "s" },
    );
    for (k, level) in p.levels.iter().enumerate() {
        s.push_str(&format!("level {k}:\n"));
        for &i in level {
            let n = p.node(i);
            let needs: Vec<&str> = p.needs(i).iter().map(|&d| p.node(d).id.as_str()).collect();
            let kind = match (&n.kind, n.publish) {
                (NodeKind::Merge, _) => "merge",
                (NodeKind::Build { .. }, true) => "build",
                (NodeKind::Build { .. }, false) => "build (dependency, not published)",
            };
            s.push_str(&format!("  {:<40} {kind}", n.id));
            if !needs.is_empty() {
                s.push_str(&format!("  needs {}", needs.join(", ")));
            }
            s.push('\n');
        }
    }
    let crit: Vec<&str> = p
        .critical_path
        .iter()
        .map(|&i| p.node(i).id.as_str())
        .collect();
    s.push_str(&format!("critical path: {}\n", crit.join(" -> ")));
    s
}

pub fn dot(p: &Plan) -> String {
    let mut s = String::from("digraph mybake {\n  rankdir=BT;\n  node [fontname=\"monospace\"];\n");
    for &i in &p.order {
        let n = p.node(i);
        let shape = match n.kind {
            NodeKind::Build { .. } => "box",
            NodeKind::Merge => "ellipse",
        };
        let style = if n.publish { "" } else { ", style=dashed" };
        s.push_str(&format!("  \"{}\" [shape={shape}{style}];\n", n.id));
    }
    for &i in &p.order {
        for d in p.needs(i) {
            s.push_str(&format!(
                "  \"{}\" -> \"{}\";\n",
                p.node(i).id,
                p.node(d).id
            ));
        }
    }
    s.push_str("}\n");
    s
}
