//! `mybake list targets|variables`.

use serde_json::{json, Value as J};

use crate::attrs::A;
use crate::diag::{escape_controls, escape_json_extra};
use crate::plan::target_platforms;
use crate::resolve::vars::Origin;
use crate::resolve::Resolved;
use crate::source::Sources;

/// A text table. Cells are free text from the build file (descriptions,
/// values): control characters are escaped ([`escape_controls`]).
fn table(rows: &[Vec<String>]) -> String {
    let escaped: Vec<Vec<String>>;
    let rows = if rows
        .iter()
        .flatten()
        .any(|c| escape_controls(c) != c.as_str())
    {
        escaped = rows
            .iter()
            .map(|r| r.iter().map(|c| escape_controls(c).into_owned()).collect())
            .collect();
        &escaped[..]
    } else {
        rows
    };
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c + 1 == cols {
                    v.clone()
                } else {
                    // Padded by hand: `format!`'s width is at most 65,535
                    // (a group of thousands of targets is a longer cell).
                    let pad = widths[c].saturating_sub(v.chars().count());
                    let mut cell = String::with_capacity(v.len() + pad);
                    cell.push_str(v);
                    cell.extend(std::iter::repeat_n(' ', pad));
                    cell
                }
            })
            .collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
    }
    s
}

pub fn targets_text(r: &Resolved) -> String {
    let mut rows = vec![vec![
        "TARGET".to_string(),
        "PLATFORMS".into(),
        "DESCRIPTION".into(),
    ]];
    for (i, t) in r.targets.iter().enumerate().filter(|(_, t)| !t.is_abstract) {
        rows.push(vec![
            t.name.v.clone(),
            target_platforms(r, i).join(","),
            t.str(A::Description)
                .map(|d| d.v.clone())
                .unwrap_or_default(),
        ]);
    }
    let mut s = table(&rows);
    if !r.groups.is_empty() {
        let mut rows = vec![vec![
            "GROUP".to_string(),
            "TARGETS".into(),
            "DESCRIPTION".into(),
        ]];
        for g in &r.groups {
            rows.push(vec![
                g.name.v.clone(),
                g.targets
                    .iter()
                    .map(|t| t.v.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                g.description.clone().unwrap_or_default(),
            ]);
        }
        s.push('\n');
        s.push_str(&table(&rows));
    }
    s
}

pub fn targets_json(r: &Resolved) -> String {
    let targets: Vec<J> = r
        .targets
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.is_abstract)
        .map(|(i, t)| json!({ "name": t.name.v, "platforms": target_platforms(r, i), "description": t.str(A::Description).map(|d| d.v.clone()), "template": t.template }))
        .collect();
    let groups: Vec<J> = r.groups.iter().map(|g| json!({ "name": g.name.v, "targets": g.targets.iter().map(|t| &t.v).collect::<Vec<_>>(), "description": g.description })).collect();
    let mut s = escape_json_extra(
        serde_json::to_string_pretty(&json!({ "targets": targets, "groups": groups }))
            .unwrap_or_default(),
    );
    s.push('\n');
    s
}

fn origin(o: &Origin, sources: &Sources) -> String {
    match o {
        Origin::Default(span) => format!("default ({})", sources.location(*span)),
        other => other.describe().to_string(),
    }
}

pub fn variables_text(r: &Resolved, sources: &Sources) -> String {
    let mut rows = vec![vec![
        "VARIABLE".to_string(),
        "TYPE".into(),
        "VALUE".into(),
        "FROM".into(),
        "DESCRIPTION".into(),
    ]];
    for v in &r.variables.list {
        rows.push(vec![
            v.name.v.clone(),
            v.ty.name().into(),
            v.value
                .as_ref()
                .map(|x| x.to_text())
                .unwrap_or_else(|| "(unset)".into()),
            origin(&v.origin, sources),
            v.description.clone().unwrap_or_default(),
        ]);
    }
    table(&rows)
}

pub fn variables_json(r: &Resolved) -> String {
    let vars: Vec<J> = r
        .variables
        .list
        .iter()
        .map(|v| {
            let value = match &v.value {
                None => J::Null,
                Some(crate::resolve::interp::Val::List(l)) => json!(l),
                Some(crate::resolve::interp::Val::Null) => J::Null,
                Some(crate::resolve::interp::Val::Map(m)) => {
                    J::Object(m.iter().map(|(k, v)| (k.clone(), J::String(v.clone()))).collect())
                }
                Some(crate::resolve::interp::Val::Text(t)) => match v.ty {
                    crate::resolve::vars::VarType::Bool => J::Bool(t == "true"),
                    crate::resolve::vars::VarType::Int => t.parse::<i64>().map(J::from).unwrap_or(J::Null),
                    _ => J::String(t.clone()),
                },
            };
            json!({ "name": v.name.v, "type": v.ty.name(), "value": value, "from": v.origin.describe(), "description": v.description })
        })
        .collect();
    let mut s = escape_json_extra(
        serde_json::to_string_pretty(&json!({ "variables": vars })).unwrap_or_default(),
    );
    s.push('\n');
    s
}
