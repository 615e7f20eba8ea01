//! `mybake convert`: bake files (docker-bake.hcl, docker-bake.json) to the
//! equivalent `mybake.kdl`, not evaluated: variables, user functions,
//! expressions (written back as `${ … }` with the same HCL text), matrices
//! (object values as `item` children), inheritance and comments carry over,
//! so `--var` and environment overrides keep working on the result. What
//! cannot be carried over is an error located in the bake file, never a
//! silent change.
//!
//! HCL is read with `hcl-edit` (the parser under `hcl-rs`), which keeps
//! spans and comments; JSON with [`crate::load::json`].

mod hcl;
pub mod kdl_out;

use std::path::{Path, PathBuf};

use crate::diag::{Diag, Diagnostics};
use crate::source::{FileId, Sources};
use kdl_out::KNode;

/// Bake's default files, in its lookup order (later files override earlier
/// ones).
pub const BAKE_DEFAULTS: &[&str] = &[
    "docker-bake.json",
    "docker-bake.hcl",
    "docker-bake.override.json",
    "docker-bake.override.hcl",
];

/// Compose files bake also reads by default; `convert` does not.
pub const COMPOSE_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// [`crate::diag::render`] with the count line saying what did not happen.
pub fn render(diags: &Diagnostics, sources: &Sources, opts: crate::diag::RenderOptions) -> String {
    crate::diag::render(diags, sources, opts).replace(
        "in the build configuration; nothing was built",
        "in the bake files; nothing was converted",
    )
}

/// The input files: those named, else bake's defaults present in `cwd`.
pub fn input_files(cwd: &Path, files: &[PathBuf]) -> Result<Vec<(String, PathBuf)>, Diag> {
    if !files.is_empty() {
        return Ok(files
            .iter()
            .map(|f| (f.display().to_string(), crate::load::absolute(cwd, f)))
            .collect());
    }
    let found: Vec<(String, PathBuf)> = BAKE_DEFAULTS
        .iter()
        .map(|n| (n.to_string(), cwd.join(n)))
        .filter(|(_, p)| p.is_file())
        .collect();
    if let Some(c) = COMPOSE_FILES.iter().find(|c| cwd.join(c).is_file()) {
        return Err(Diag::new(
            "mybake::convert::compose",
            format!("{c} is a compose file, which `mybake convert` does not convert"),
        )
        .help(
            "name the bake files to convert (`mybake convert docker-bake.hcl`), \
             and write the compose services as targets by hand",
        ));
    }
    if found.is_empty() {
        return Err(Diag::new(
            "mybake::convert::no-file",
            format!(
                "no bake file in {} (looked for {})",
                cwd.display(),
                BAKE_DEFAULTS.join(", ")
            ),
        )
        .help("name the files to convert: `mybake convert FILE...`"));
    }
    Ok(found)
}

/// Convert the files (already read into `sources`, in order) to one KDL
/// text, or every problem found in all of them.
pub fn convert(sources: &Sources, ids: &[FileId]) -> Result<String, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut nodes: Vec<KNode> = Vec::new();
    let mut renames: Vec<(String, String)> = Vec::new();
    for (n, &id) in ids.iter().enumerate() {
        let Some(file) = sources.get(id) else {
            continue;
        };
        let mut header = KNode::new("");
        header
            .comments
            .push(format!("converted from {} by `mybake convert`", file.name));
        let before = nodes.len();
        let is_json = crate::load::is_json(&file.path);
        if is_json {
            let decls = crate::load::json::decode_file(id, &file.text, &mut diags);
            nodes.extend(from_decls(&decls));
        } else if let Some(c) = COMPOSE_FILES
            .iter()
            .find(|c| file.path.file_name().is_some_and(|f| f == **c))
        {
            diags.push(Diag::new(
                "mybake::convert::compose",
                format!("{c} is a compose file, which `mybake convert` does not convert"),
            ));
        } else {
            let (n, r) = hcl::convert_file(id, &file.text, &mut diags);
            nodes.extend(n);
            renames.extend(r);
        }
        // The file's name as a comment above its first node.
        if let Some(first) = nodes.get_mut(before) {
            first.comments.insert(0, header.comments.remove(0));
            if n > 0 {
                first.blank_before = true;
            }
        }
    }
    // Groups that name a matrix target by its bake label name all of its
    // expansions: in KDL that is the target's name template.
    for node in nodes.iter_mut().filter(|n| n.name == "group") {
        for c in node.children.iter_mut().flatten() {
            if c.name != "targets" {
                continue;
            }
            for a in &mut c.args {
                if let kdl_out::KVal::Str(s) = a {
                    if let Some((_, to)) = renames.iter().find(|(from, _)| from == s) {
                        *s = to.clone();
                    }
                }
            }
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut out = String::new();
    for n in &nodes {
        n.write(&mut out, 0);
    }
    Ok(out)
}

/// KDL nodes for declarations decoded from a bake JSON file.
fn from_decls(d: &crate::load::FileDecls) -> Vec<KNode> {
    use crate::attrs::{Shape, ATTRS};
    use crate::load::target::AxisValue;
    use crate::load::DefaultValue;
    use kdl_out::KVal;
    let mut out = Vec::new();
    for v in &d.variables {
        let mut n = KNode::new("variable").str_arg(v.name.v.clone());
        if let Some(def) = &v.default {
            let val = match &def.v {
                DefaultValue::Str(s) => KVal::Str(s.clone()),
                DefaultValue::Bool(b) => KVal::Bool(*b),
                DefaultValue::Int(i) => KVal::Int(*i),
            };
            n = n.prop("default", val);
        }
        if let Some(t) = &v.ty {
            n = n.prop("type", KVal::Str(t.v.clone()));
        }
        if let Some(t) = &v.description {
            n = n.prop("description", KVal::Str(t.v.clone()));
        }
        out.push(n);
    }
    for g in &d.groups {
        let mut n = KNode::new("group").str_arg(g.name.v.clone());
        let mut children = Vec::new();
        if let Some(desc) = &g.description {
            children.push(KNode::new("description").str_arg(desc.v.clone()));
        }
        if let Some(t) = &g.targets {
            let mut c = KNode::new("targets");
            c.args = t.iter().map(|s| KVal::Str(s.v.clone())).collect();
            children.push(c);
        }
        n.children = Some(children);
        out.push(n);
    }
    for t in &d.targets {
        let mut n = KNode::new("target").str_arg(t.name.v.clone());
        let mut children = Vec::new();
        if let Some(m) = &t.matrix {
            let axes =
                m.v.iter()
                    .map(|(name, vals)| {
                        let mut a = KNode::new(&name.v);
                        let mut items = Vec::new();
                        for v in vals {
                            match v {
                                AxisValue::Str(s) => a.args.push(KVal::Str(s.v.clone())),
                                AxisValue::Item(fields) => {
                                    let mut it = KNode::new("item");
                                    it.props = fields
                                        .v
                                        .iter()
                                        .map(|(k, v)| (k.clone(), KVal::Str(v.v.clone())))
                                        .collect();
                                    items.push(it);
                                }
                            }
                        }
                        if !items.is_empty() {
                            a.children = Some(items);
                        }
                        a
                    })
                    .collect();
            let mut mn = KNode::new("matrix");
            mn.children = Some(axes);
            children.push(mn);
        }
        if let Some(inh) = &t.inherits {
            let mut c = KNode::new("inherits");
            c.args = inh.iter().map(|s| KVal::Str(s.v.clone())).collect();
            children.push(c);
        }
        for (i, def) in ATTRS.iter().enumerate() {
            let Some(v) = t.attrs.get(i) else { continue };
            match (def.shape, v) {
                (_, crate::value::Value::Str(s)) => {
                    let val = match (def.shape, s.v.as_str()) {
                        (Shape::Bool, "true") => KVal::Bool(true),
                        (Shape::Bool, "false") => KVal::Bool(false),
                        _ => KVal::Str(s.v.clone()),
                    };
                    children.push(KNode::new(def.name).arg(val));
                }
                (_, crate::value::Value::List(l)) => {
                    let mut c = KNode::new(def.name);
                    c.args = l.iter().map(|s| KVal::Str(s.v.clone())).collect();
                    children.push(c);
                }
                (Shape::ChildMap, crate::value::Value::Map(m)) => {
                    let mut c = KNode::new(def.name);
                    c.children = Some(
                        m.iter()
                            .map(|(k, e)| KNode::new(k).str_arg(e.value.v.clone()))
                            .collect(),
                    );
                    children.push(c);
                }
                (_, crate::value::Value::Map(m)) => {
                    for (k, e) in m {
                        children.push(
                            KNode::new(def.name)
                                .str_arg(k.clone())
                                .str_arg(e.value.v.clone()),
                        );
                    }
                }
                (_, crate::value::Value::Objects(objs)) => {
                    for o in objs {
                        let mut c = KNode::new(def.name);
                        for (k, v) in &o.fields {
                            if k == "type" && def.shape == Shape::Typed && c.args.is_empty() {
                                c.args.push(KVal::Str(v.v.clone()));
                            } else {
                                c.props.push((k.clone(), KVal::Str(v.v.clone())));
                            }
                        }
                        children.push(c);
                    }
                }
            }
        }
        n.children = Some(children);
        out.push(n);
    }
    out
}

#[cfg(test)]
mod tests;
