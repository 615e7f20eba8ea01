//! `index create` and `index inspect` output.

use std::fmt::Write as _;

use crate::publish::index::{BlobRef, Descriptor};
use crate::publish::{CreateReport, InspectNode, Inspection};

/// `index create` (not a dry run): the line on stderr.
pub fn created(rep: &CreateReport) -> String {
    format!(
        "wrote {} ({} manifests) to {}\n",
        rep.digest,
        rep.manifests.len(),
        rep.tags.join(", ")
    )
}

/// `1234 B`, `1.5 KiB`, `2.0 MiB`.
fn human_size(size: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if size < 1024 {
        return format!("{size} B");
    }
    let mut value = size as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `index inspect --format json`: pretty JSON (stable key order).
pub fn inspect_json(i: &Inspection) -> String {
    serde_json::to_string_pretty(i).expect("an inspection always serializes")
}

/// `index inspect`: a human-readable tree.
pub fn inspect_text(i: &Inspection) -> String {
    let mut out = String::new();
    let r = &i.root;
    let _ = writeln!(out, "Name:      {}", i.name);
    let _ = writeln!(out, "MediaType: {}", r.media_type);
    let _ = writeln!(out, "Digest:    {}", r.digest);
    let _ = writeln!(out, "Size:      {} ({} bytes)", human_size(r.size), r.size);
    if let Some(p) = &r.platform {
        let _ = writeln!(out, "Platform:  {p}");
    }
    if !r.annotations.is_empty() {
        let _ = writeln!(out, "Annotations:");
        for (k, v) in &r.annotations {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
    let lines = tree_lines(r);
    if !lines.is_empty() {
        out.push('\n');
        let label = if r.manifests.is_empty() {
            "Contents:"
        } else {
            "Manifests:"
        };
        let _ = writeln!(out, "{label}");
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

fn node_label(n: &InspectNode) -> String {
    let e = Descriptor {
        media_type: n.media_type.clone(),
        digest: n.digest.clone(),
        size: n.size,
        annotations: n.annotations.clone(),
        platform: n.platform.clone(),
        artifact_type: None,
    };
    let what = match (e.attestation_subject(), &n.platform) {
        (Some(subject), _) => format!("attestation for {subject}"),
        (None, Some(p)) => p.to_string(),
        (None, None) => "(no platform)".to_owned(),
    };
    format!(
        "{what}  {}  {}  {}",
        n.digest,
        n.media_type,
        human_size(n.size)
    )
}

/// The children lines of a node: manifests, or config and layers.
fn tree_lines(n: &InspectNode) -> Vec<String> {
    enum Item<'a> {
        Node(&'a InspectNode),
        Blob(&'static str, &'a BlobRef),
        Text(String),
    }
    let mut items: Vec<Item> = Vec::new();
    if let Some(e) = &n.error {
        items.push(Item::Text(format!("error: {e}")));
    }
    if let Some(c) = &n.config {
        items.push(Item::Blob("config", c));
    }
    items.extend(n.layers.iter().map(|l| Item::Blob("layer ", l)));
    items.extend(n.manifests.iter().map(Item::Node));
    let mut out = Vec::new();
    let count = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let last = i + 1 == count;
        let (branch, indent) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        match item {
            Item::Text(t) => out.push(format!("{branch}{t}")),
            Item::Blob(kind, b) => out.push(format!(
                "{branch}{kind}  {}  {}  {}",
                b.digest,
                b.media_type,
                human_size(b.size)
            )),
            Item::Node(child) => {
                out.push(format!("{branch}{}", node_label(child)));
                for (k, v) in &child.annotations {
                    out.push(format!("{indent}  {k}: {v}"));
                }
                for line in tree_lines(child) {
                    out.push(format!("{indent}{line}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::index::{Platform, OCI_INDEX, OCI_MANIFEST};
    use std::collections::BTreeMap;

    #[test]
    fn sizes() {
        assert_eq!(human_size(698), "698 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
    }

    #[test]
    fn text_tree() {
        let blob = |d: &str, size| BlobRef {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            digest: d.into(),
            size,
            urls: vec![],
        };
        let child = InspectNode {
            media_type: OCI_MANIFEST.into(),
            digest: "sha256:aa".into(),
            size: 400,
            platform: Some(Platform::parse("linux/arm/v7").unwrap()),
            annotations: BTreeMap::new(),
            config: Some(blob("sha256:cc", 100)),
            layers: vec![blob("sha256:ll", 2048)],
            manifests: vec![],
            error: None,
        };
        let insp = Inspection {
            name: "localhost:5000/x:y".into(),
            root: InspectNode {
                media_type: OCI_INDEX.into(),
                digest: "sha256:ii".into(),
                size: 300,
                platform: None,
                annotations: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
                config: None,
                layers: vec![],
                manifests: vec![
                    child.clone(),
                    InspectNode {
                        error: Some("gone".into()),
                        platform: None,
                        config: None,
                        layers: vec![],
                        ..child
                    },
                ],
                error: None,
            },
        };
        let text = inspect_text(&insp);
        assert!(text.contains("Name:      localhost:5000/x:y\n"), "{text}");
        assert!(text.contains("├── linux/arm/v7  sha256:aa"), "{text}");
        assert!(text.contains("│   ├── config  sha256:cc"), "{text}");
        assert!(text.contains("│   └── layer   sha256:ll"), "{text}");
        assert!(text.contains("└── (no platform)  sha256:aa"), "{text}");
        assert!(text.contains("    └── error: gone"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&inspect_json(&insp)).unwrap();
        assert_eq!(json["name"], "localhost:5000/x:y");
        assert_eq!(json["mediaType"], OCI_INDEX);
        assert_eq!(json["manifests"][0]["platform"]["variant"], "v7");
        assert_eq!(json["manifests"][0]["layers"][0]["size"], 2048);
    }
}
