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

/// Resolve names (empty = group `default`, else target `default`).
pub fn select(r: &Resolved, names: &[String]) -> Result<Selection, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut sel = Selection {
        requested_set: vec![false; r.targets.len()],
        ..Selection::default()
    };
    let names: Vec<Sp<String>> = if names.is_empty() {
        // No group `default`: a target `default` is built (bake).
        if r.group("default").is_none() && r.target("default").is_none() {
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
    // Groups already expanded (a group reached again adds nothing new).
    let mut done = vec![false; r.groups.len()];
    for n in &names {
        expand(r, n, &mut sel, &mut done, &mut diags);
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

/// Every cycle among the groups, each reported once (at the first
/// include that closes it, walking the groups in declaration order). One
/// depth-first walk over all groups, iterative and visiting each group
/// once: linear in the number of group members.
pub(super) fn group_cycles(r: &Resolved) -> Diagnostics {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut diags = Diagnostics::default();
    let mut mark = vec![Mark::New; r.groups.len()];
    for root in 0..r.groups.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // (group, next member); `path`: the names and where each was
        // included, for the cycle message.
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        let mut path: Vec<(String, Span)> = vec![(r.groups[root].name.v.clone(), Span::NONE)];
        mark[root] = Mark::Active;
        while let Some(&mut (g, ref mut k)) = stack.last_mut() {
            let members = &r.groups[g].targets;
            let Some(m) = members.get(*k) else {
                mark[g] = Mark::Done;
                stack.pop();
                path.pop();
                continue;
            };
            *k += 1;
            let Some(&mg) = r.group_index.get(&m.v) else {
                continue;
            };
            match mark[mg] {
                Mark::New => {
                    mark[mg] = Mark::Active;
                    stack.push((mg, 0));
                    path.push((m.v.clone(), m.span));
                }
                Mark::Active => {
                    let at = stack.iter().position(|&(s, _)| s == mg).unwrap_or(0);
                    diags.push(group_cycle(&path, at, m));
                }
                Mark::Done => {}
            }
        }
    }
    diags
}

fn group_cycle(stack: &[(String, Span)], k: usize, name: &Sp<String>) -> Diag {
    let mut path: Vec<&str> = stack[k..].iter().map(|(s, _)| s.as_str()).collect();
    path.push(&name.v);
    let mut d = Diag::new(
        "mybake::select::group-cycle",
        format!(
            "groups include each other in a cycle: {}",
            crate::diag::elide_path(&path)
        ),
    );
    for (_, span) in stack[k + 1..].iter().take(crate::diag::PATH_NAMES_SHOWN) {
        d = d.label(*span, "includes");
    }
    d.label(name.span, "includes")
}

/// Request what `name` names: a group's members (depth-first, in order),
/// a target, or a template's expansions. Iterative, and each group is
/// expanded once (`done`), so nested groups cost their size, not the
/// number of paths to them.
fn expand(
    r: &Resolved,
    name: &Sp<String>,
    sel: &mut Selection,
    done: &mut [bool],
    diags: &mut Diagnostics,
) {
    let Some(&gi) = r.group_index.get(&name.v) else {
        request(r, name, sel, diags);
        return;
    };
    if done[gi] {
        return;
    }
    // (group, next member), and the names and spans for a cycle message.
    let mut stack: Vec<(usize, usize)> = vec![(gi, 0)];
    let mut path: Vec<(String, Span)> = vec![(name.v.clone(), name.span)];
    done[gi] = true;
    sel.groups.insert(r.groups[gi].name.v.clone(), gi);
    while let Some(&mut (g, ref mut k)) = stack.last_mut() {
        let Some(m) = r.groups[g].targets.get(*k) else {
            stack.pop();
            path.pop();
            continue;
        };
        *k += 1;
        let Some(&mg) = r.group_index.get(&m.v) else {
            request(r, m, sel, diags);
            continue;
        };
        if let Some(at) = stack.iter().position(|&(s, _)| s == mg) {
            diags.push(group_cycle(&path, at, m));
            continue;
        }
        if done[mg] {
            continue;
        }
        done[mg] = true;
        sel.groups.insert(r.groups[mg].name.v.clone(), mg);
        stack.push((mg, 0));
        path.push((m.v.clone(), m.span));
    }
}

/// A name that is not a group: a target or a template's expansions.
fn request(r: &Resolved, name: &Sp<String>, sel: &mut Selection, diags: &mut Diagnostics) {
    if let Some(&i) = r.index.get(&name.v) {
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
