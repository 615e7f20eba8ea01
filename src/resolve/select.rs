//! From the command line's target/group names to the targets of the run.

use std::collections::BTreeMap;

use super::Resolved;
use crate::diag::{suggest, Diag, Diagnostics};
use crate::source::{Sp, Span};

/// What a request resolved to.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Groups the request went through (name → index in
    /// [`Resolved::groups`], whose `targets` are the members as declared).
    pub groups: BTreeMap<String, usize>,
    /// Requested targets (to be published), in request order.
    pub requested: Vec<usize>,
    /// Membership of `requested`, indexed like [`Resolved::targets`].
    requested_set: Vec<bool>,
    /// Requested targets plus every `target:` dependency, by name order.
    pub all: Vec<usize>,
}

impl Selection {
    pub fn is_requested(&self, i: usize) -> bool {
        self.requested_set.get(i).copied().unwrap_or(false)
    }

    fn request(&mut self, i: usize) {
        if !self.requested_set[i] {
            self.requested_set[i] = true;
            self.requested.push(i);
        }
    }
}

/// Resolve names (empty = group `default`).
pub fn select(r: &Resolved, names: &[String]) -> Result<Selection, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut sel = Selection {
        requested_set: vec![false; r.targets.len()],
        ..Selection::default()
    };
    let names: Vec<Sp<String>> = if names.is_empty() {
        if r.group("default").is_none() {
            let targets: Vec<&str> = r
                .targets
                .iter()
                .filter(|t| !t.is_abstract)
                .map(|t| t.name.v.as_str())
                .collect();
            let groups: Vec<&str> = r.groups.iter().map(|g| g.name.v.as_str()).collect();
            let mut d = Diag::new(
                "mybake::select::no-default",
                "no target named and no group `default` to build",
            );
            d =
                d.help(format!(
                "name a target or group, or declare `group \"default\"`; targets: {}; groups: {}",
                if targets.is_empty() { "(none)".to_string() } else { targets.join(", ") },
                if groups.is_empty() { "(none)".to_string() } else { groups.join(", ") }
            ));
            return Err(d.into());
        }
        vec![Sp::none("default".to_string())]
    } else {
        names.iter().map(|n| Sp::none(n.clone())).collect()
    };
    let mut stack = Vec::new();
    for n in &names {
        expand(r, n, &mut sel, &mut stack, &mut diags);
    }
    // Dependency closure, in name order.
    let mut seen = vec![false; r.targets.len()];
    let mut all = Vec::with_capacity(sel.requested.len());
    let mut todo: Vec<usize> = sel.requested.clone();
    while let Some(i) = todo.pop() {
        if !std::mem::replace(&mut seen[i], true) {
            all.push(i);
            for (_, dep) in &r.targets[i].deps {
                if let Some(&d) = r.index.get(&dep.v) {
                    todo.push(d);
                }
            }
        }
    }
    sel.all = by_name(r, all);
    diags.into_result(sel)
}

/// Target indices sorted by target name (names are unique). Each name's
/// first eight bytes, as a big-endian number, order most pairs without a
/// string comparison.
fn by_name(r: &Resolved, targets: Vec<usize>) -> Vec<usize> {
    let name = |i: usize| r.targets[i].name.v.as_bytes();
    let mut keyed: Vec<(u64, usize)> = targets
        .into_iter()
        .map(|i| {
            let mut head = [0u8; 8];
            let n = name(i);
            let k = n.len().min(8);
            head[..k].copy_from_slice(&n[..k]);
            (u64::from_be_bytes(head), i)
        })
        .collect();
    keyed.sort_unstable_by(|(ka, a), (kb, b)| ka.cmp(kb).then_with(|| name(*a).cmp(name(*b))));
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// The group-cycle diagnostics [`select`] reports for `group`, without
/// building a selection (resolve checks every group this way).
pub(super) fn group_cycles(r: &Resolved, group: &str) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let mut stack = Vec::new();
    expand_groups(r, &Sp::none(group.to_string()), &mut stack, &mut diags);
    diags
}

/// [`expand`] restricted to groups: the same walk and cycle reports.
fn expand_groups(
    r: &Resolved,
    name: &Sp<String>,
    stack: &mut Vec<(String, Span)>,
    diags: &mut Diagnostics,
) {
    let Some(g) = r.group(&name.v) else {
        return;
    };
    if let Some(k) = stack.iter().position(|(s, _)| *s == name.v) {
        diags.push(group_cycle(stack, k, name));
        return;
    }
    stack.push((name.v.clone(), name.span));
    for t in &g.targets {
        expand_groups(r, t, stack, diags);
    }
    stack.pop();
}

fn group_cycle(stack: &[(String, Span)], k: usize, name: &Sp<String>) -> Diag {
    let mut path: Vec<&str> = stack[k..].iter().map(|(s, _)| s.as_str()).collect();
    path.push(&name.v);
    let mut d = Diag::new(
        "mybake::select::group-cycle",
        format!(
            "groups include each other in a cycle: {}",
            path.join(" -> ")
        ),
    );
    for (_, span) in &stack[k + 1..] {
        d = d.label(*span, "includes");
    }
    d.label(name.span, "includes")
}

fn expand(
    r: &Resolved,
    name: &Sp<String>,
    sel: &mut Selection,
    stack: &mut Vec<(String, Span)>,
    diags: &mut Diagnostics,
) {
    if let Some(&gi) = r.group_index.get(&name.v) {
        let g = &r.groups[gi];
        if let Some(k) = stack.iter().position(|(s, _)| *s == name.v) {
            diags.push(group_cycle(stack, k, name));
            return;
        }
        sel.groups.insert(g.name.v.clone(), gi);
        stack.push((name.v.clone(), name.span));
        for t in &g.targets {
            expand(r, t, sel, stack, diags);
        }
        stack.pop();
    } else if let Some(&i) = r.index.get(&name.v) {
        sel.request(i);
    } else if let Some(exp) = r.templates.get(&name.v) {
        for &i in exp {
            sel.request(i);
        }
    } else if name.span.is_none() {
        // Names in groups were checked by `resolve`; this one is from the
        // command line.
        let candidates = r
            .index
            .keys()
            .chain(r.group_index.keys())
            .chain(r.templates.keys());
        diags.push(
            Diag::new(
                "mybake::select::unknown",
                format!("no target or group named `{}`", name.v),
            )
            .help_opt(
                suggest(&name.v, candidates.map(String::as_str))
                    .or_else(|| Some("`mybake list targets` shows what exists".into())),
            ),
        );
    }
}
