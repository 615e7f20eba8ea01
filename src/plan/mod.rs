//! Stage 3 — `plan`: the per-platform build DAG.
//!
//! Entry point: [`plan`]. Output: [`Plan`], a petgraph DAG with one build
//! node per (target, platform) the run needs and one merge node per
//! requested target. Edges point from a node to what must finish first: a
//! `target:` context makes `app@P` need `base@P` only, for each platform P,
//! so a platform waits for nothing but its own dependency.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::attrs::A;
use crate::diag::{Diag, Diagnostics};
use crate::resolve::{Resolved, Selection};
use crate::source::{Sp, Span};

/// What a node does: a build has a platform, a merge has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// One solve of the target for `platform`.
    Build { platform: String },
    /// The target's index of all its built platforms.
    Merge,
}

#[derive(Debug, Clone)]
pub struct Node {
    /// `target@platform` for builds, `target` for merges.
    pub id: String,
    pub kind: NodeKind,
    /// Index into [`Resolved::targets`].
    pub target: usize,
    pub target_name: String,
    /// False for dependencies built only for their dependents (not
    /// published: bake's `cacheonly`).
    pub publish: bool,
}

impl Node {
    /// The platform of a build node (`None` for a merge).
    pub fn platform(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Build { platform } => Some(platform),
            NodeKind::Merge => None,
        }
    }
    pub fn is_build(&self) -> bool {
        matches!(self.kind, NodeKind::Build { .. })
    }
    pub fn is_merge(&self) -> bool {
        self.kind == NodeKind::Merge
    }
}

/// Output of the plan stage.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Edge `a → b` means `a` needs `b`.
    pub graph: DiGraph<Node, ()>,
    /// Topological order (dependencies first), stable for the same input.
    pub order: Vec<NodeIndex>,
    /// `levels[k]`: nodes whose longest chain of needs has length `k`.
    pub levels: Vec<Vec<NodeIndex>>,
    /// Longest chain, dependencies first.
    pub critical_path: Vec<NodeIndex>,
    /// Platforms each target is built for in this run.
    pub platforms: HashMap<usize, Vec<String>>,
}

impl Plan {
    /// The targets (indexes into `Resolved::targets`) that have a build
    /// node, sorted, each once.
    pub fn built_targets(&self) -> Vec<usize> {
        let mut targets: Vec<usize> = self
            .graph
            .node_weights()
            .filter(|n| n.is_build())
            .map(|n| n.target)
            .collect();
        targets.sort_unstable();
        targets.dedup();
        targets
    }

    pub fn node(&self, i: NodeIndex) -> &Node {
        &self.graph[i]
    }
    /// What `i` needs, in insertion order.
    pub fn needs(&self, i: NodeIndex) -> Vec<NodeIndex> {
        let mut v: Vec<NodeIndex> = self
            .graph
            .neighbors_directed(i, Direction::Outgoing)
            .collect();
        v.sort();
        v
    }
    pub fn builds(&self) -> usize {
        self.graph.node_weights().filter(|n| n.is_build()).count()
    }
}

/// Build the DAG for the selected targets.
pub fn plan(r: &Resolved, sel: &Selection) -> Result<Plan, Diagnostics> {
    let needed: HashMap<usize, Vec<String>> = platforms_needed(r, sel)?
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p?.iter().map(String::from).collect())))
        .collect();
    Ok(graph(r, sel, needed))
}

/// Every check [`plan`] makes (cycles, dependencies missing a platform)
/// without building the graph: what `print` needs.
pub fn validate(r: &Resolved, sel: &Selection) -> Result<(), Diagnostics> {
    platforms_needed(r, sel).map(|_| ())
}

/// A target's declared platforms (`local` read as the local platform),
/// or the local platform when it declares none.
#[derive(Clone, Copy)]
enum Declared<'r> {
    /// The declared list and the local platform.
    List(&'r [Sp<String>], &'r str),
    Local(&'r str),
}

impl<'r> Declared<'r> {
    fn of(r: &'r Resolved, i: usize) -> Declared<'r> {
        match r.targets[i].platforms() {
            [] => Declared::Local(&r.local_platform),
            p => Declared::List(p, &r.local_platform),
        }
    }
    fn iter(self) -> impl Iterator<Item = &'r str> {
        let (list, local, only) = match self {
            Declared::List(l, local) => (l, local, None),
            Declared::Local(p) => (&[][..], p, Some(p)),
        };
        list.iter()
            .map(move |s| {
                if s.v == crate::resolve::platform::LOCAL {
                    local
                } else {
                    s.v.as_str()
                }
            })
            .chain(only)
    }
    /// Whether the list names `local` (so it may hold a platform twice).
    fn has_local(self) -> bool {
        matches!(self, Declared::List(l, _) if l.iter().any(|s| s.v == crate::resolve::platform::LOCAL))
    }
    fn contains(self, p: &str) -> bool {
        self.find(p).is_some()
    }
    /// The declared spelling of platform `p`: the same string, or one that
    /// is the same platform after normalisation (`linux/arm` and
    /// `linux/arm/v7`).
    fn find(self, p: &str) -> Option<&'r str> {
        self.iter()
            .find(|q| *q == p)
            .or_else(|| self.iter().find(|q| same_platform(q, p)))
    }
}

/// Whether two platform strings name the same platform, compared as
/// containerd does after normalisation ([`crate::oci::Platform`]).
pub fn same_platform(a: &str, b: &str) -> bool {
    use crate::oci::Platform;
    a == b || matches!((Platform::parse(a), Platform::parse(b)), (Ok(x), Ok(y)) if x.matches(&y))
}

/// The platforms a target is built for in a run.
#[derive(Clone)]
enum Needed<'r> {
    /// All it declares (a requested target).
    Declared(Declared<'r>),
    /// Those its dependents need, each once.
    ForDependents(Vec<&'r str>),
}

impl<'r> Needed<'r> {
    fn iter(&self) -> impl Iterator<Item = &'r str> + '_ {
        let (all, some) = match self {
            Needed::Declared(d) => (Some(d.iter()), None),
            Needed::ForDependents(v) => (None, Some(v.iter().copied())),
        };
        all.into_iter().flatten().chain(some.into_iter().flatten())
    }
}

/// The platforms each selected target is built for, indexed like
/// `r.targets` (`None`: not built in this run), or every problem.
fn platforms_needed<'r>(
    r: &'r Resolved,
    sel: &Selection,
) -> Result<Vec<Option<Needed<'r>>>, Diagnostics> {
    let mut diags = Diagnostics::default();
    let order = target_order(r, sel).map_err(Diagnostics::from)?;
    // Platforms per target: requested targets build what they declare;
    // dependencies build what their dependents need (dependents first).
    let mut needed: Vec<Option<Needed<'r>>> = vec![None; r.targets.len()];
    // A target that declares no platforms is built for its own (native)
    // platform when requested, plus whatever its dependents need.
    let platformless = |i: usize| r.targets[i].platforms().is_empty();
    for &i in &sel.requested {
        let d = Declared::of(r, i);
        needed[i] = Some(if platformless(i) || d.has_local() {
            // Each platform once (`local` may repeat a listed one).
            let mut v: Vec<&str> = Vec::new();
            for p in d.iter() {
                if !v.iter().any(|q| same_platform(q, p)) {
                    v.push(p);
                }
            }
            Needed::ForDependents(v)
        } else {
            Needed::Declared(d)
        });
    }
    for &i in order.iter().rev() {
        if r.targets[i].deps.is_empty() {
            continue;
        }
        // Taken out while its dependencies are updated (a target is never
        // its own dependency: cycles were rejected above).
        let mine = needed[i].take();
        let mine_ref = || mine.iter().flat_map(Needed::iter);
        for (_, dep) in &r.targets[i].deps {
            let Some(&d) = r.index.get(&dep.v) else {
                continue;
            };
            let avail = Declared::of(r, d);
            if platformless(d) {
                // Built for whatever its dependents need (bake), each
                // platform once, in the order they are first needed.
                if let Needed::ForDependents(entry) =
                    needed[d].get_or_insert_with(|| Needed::ForDependents(Vec::new()))
                {
                    for p in mine_ref() {
                        if !entry.iter().any(|q| same_platform(q, p)) {
                            entry.push(p);
                        }
                    }
                }
                continue;
            }
            // The usual case: the dependent needs exactly what the
            // dependency declares, so nothing is missing.
            let missing: Vec<&str> = if avail.iter().eq(mine_ref()) {
                Vec::new()
            } else {
                mine_ref().filter(|p| !avail.contains(p)).collect()
            };
            if !missing.is_empty() {
                let dt = &r.targets[d];
                let list = missing.join(", ");
                let avail_list = avail.iter().collect::<Vec<_>>().join(", ");
                let mut diag = Diag::new(
                    "mybake::plan::missing-platform",
                    format!(
                        "`{}` needs `{}` for {list}, but `{}` is not built for {}",
                        r.targets[i].name.v,
                        dt.name.v,
                        dt.name.v,
                        if missing.len() == 1 { "it" } else { "them" }
                    ),
                )
                .label(
                    dep.span,
                    format!("`{}` depends on `{}` here", r.targets[i].name.v, dt.name.v),
                );
                // (A dependency that declares no platforms has none missing.)
                if let Some(p) = dt.platforms().first() {
                    diag = diag.label(p.span, format!("`{}` platforms: {avail_list}", dt.name.v));
                }
                diags.push(diag.help(format!("add {list} to the platforms of `{}`", dt.name.v)));
            }
            // A requested dependency is built for all it declares already.
            if let Needed::ForDependents(entry) =
                needed[d].get_or_insert_with(|| Needed::ForDependents(Vec::new()))
            {
                // `entry` holds platforms of `avail` only, each once: as
                // many as `avail` has means all of them.
                if entry.len() < avail.iter().count() {
                    for p in mine_ref() {
                        // The dependency's own spelling of the platform.
                        if let Some(q) = avail.find(p) {
                            if !entry.contains(&q) {
                                entry.push(q);
                            }
                        }
                    }
                }
            }
        }
        needed[i] = mine;
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    // Keep each target's declared platform order (a target declaring
    // none: its native platform first when requested, then by name).
    for (i, v) in needed.iter_mut().enumerate() {
        if platformless(i) {
            // By name, after the native platform when requested.
            if let Some(Needed::ForDependents(v)) = v {
                let first = usize::from(sel.is_requested(i)).min(v.len());
                v[first..].sort_unstable();
            }
            continue;
        }
        if let Some(Needed::ForDependents(v)) = v {
            let d = Declared::of(r, i);
            v.sort_by_key(|p| d.iter().position(|x| x == *p));
        }
    }
    Ok(needed)
}

/// The DAG: a build node per (target, platform), a merge node per
/// requested target, per-platform edges.
fn graph(r: &Resolved, sel: &Selection, needed: HashMap<usize, Vec<String>>) -> Plan {
    let mut g: DiGraph<Node, ()> = DiGraph::new();
    // Build nodes of each target: (platform, node).
    let mut build_ix: Vec<Vec<(&str, NodeIndex)>> = vec![Vec::new(); r.targets.len()];
    for &i in &sel.all {
        let t = &r.targets[i];
        let publish = sel.is_requested(i);
        for p in needed.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            let mut id = String::with_capacity(t.name.v.len() + 1 + p.len());
            id.push_str(&t.name.v);
            id.push('@');
            id.push_str(p);
            let n = g.add_node(Node {
                id,
                kind: NodeKind::Build {
                    platform: p.clone(),
                },
                target: i,
                target_name: t.name.v.clone(),
                publish,
            });
            build_ix[i].push((p.as_str(), n));
        }
        if publish {
            g.add_node(Node {
                id: t.name.v.clone(),
                kind: NodeKind::Merge,
                target: i,
                target_name: t.name.v.clone(),
                publish,
            });
        }
    }
    let find = |t: usize, p: &str| {
        let nodes = &build_ix[t];
        nodes
            .iter()
            .find(|(q, _)| *q == p)
            .or_else(|| nodes.iter().find(|(q, _)| same_platform(q, p)))
            .map(|&(_, n)| n)
    };
    let mut edges = Vec::new();
    for n in g.node_indices() {
        let node = &g[n];
        let t = &r.targets[node.target];
        match node.kind {
            NodeKind::Build { .. } => {
                let p = node.platform().unwrap_or("");
                for (_, dep) in &t.deps {
                    if let Some(&d) = r.index.get(&dep.v) {
                        if let Some(m) = find(d, p) {
                            edges.push((n, m));
                        }
                    }
                }
            }
            NodeKind::Merge => {
                for p in &needed[&node.target] {
                    if let Some(m) = find(node.target, p) {
                        edges.push((n, m));
                    }
                }
            }
        }
    }
    for (a, b) in edges {
        if !g.contains_edge(a, b) {
            g.add_edge(a, b, ());
        }
    }
    let (order, levels, critical_path) = analyse(&g);
    Plan {
        graph: g,
        order,
        levels,
        critical_path,
        platforms: needed,
    }
}

/// Targets of the selection in dependency order (dependencies first), or
/// the first cycle found, printed as a path with each edge's location.
fn target_order(r: &Resolved, sel: &Selection) -> Result<Vec<usize>, Diag> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    // Targets outside the selection count as done.
    let mut mark: Vec<Mark> = vec![Mark::Done; r.targets.len()];
    for &i in &sel.all {
        mark[i] = Mark::New;
    }
    let mut out = Vec::new();
    // Iterative DFS: (target, next dep index); `path` holds the edge spans.
    for &root in &sel.all {
        if mark[root] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        let mut path: Vec<Span> = Vec::new();
        mark[root] = Mark::Active;
        while let Some(&mut (t, ref mut k)) = stack.last_mut() {
            let deps = &r.targets[t].deps;
            if *k < deps.len() {
                let (_, dep) = &deps[*k];
                *k += 1;
                let Some(&d) = r.index.get(&dep.v) else {
                    continue;
                };
                match mark[d] {
                    Mark::New => {
                        mark[d] = Mark::Active;
                        stack.push((d, 0));
                        path.push(dep.span);
                    }
                    Mark::Active => {
                        let start = stack.iter().position(|(s, _)| *s == d).unwrap_or(0);
                        let mut names: Vec<&str> = stack[start..]
                            .iter()
                            .map(|(s, _)| r.targets[*s].name.v.as_str())
                            .collect();
                        names.push(&r.targets[d].name.v);
                        let mut diag = Diag::new(
                            "mybake::plan::cycle",
                            format!("dependency cycle: {}", crate::diag::elide_path(&names)),
                        );
                        // The first edges (a long cycle is summed up).
                        for (j, span) in path[start..]
                            .iter()
                            .chain(std::iter::once(&dep.span))
                            .enumerate()
                            .take(crate::diag::PATH_NAMES_SHOWN)
                        {
                            let from = names[j];
                            let to = names[j + 1];
                            diag = diag.label(*span, format!("{from} -> {to}"));
                        }
                        return Err(diag
                            .help("a target cannot depend on itself through `target:` contexts"));
                    }
                    Mark::Done => {}
                }
            } else {
                mark[t] = Mark::Done;
                out.push(t);
                stack.pop();
                path.pop();
            }
        }
    }
    Ok(out)
}

type Analysis = (Vec<NodeIndex>, Vec<Vec<NodeIndex>>, Vec<NodeIndex>);

/// Topological order (Kahn, lowest index first), levels, critical path.
pub fn analyse(g: &DiGraph<Node, ()>) -> Analysis {
    let n = g.node_count();
    let mut remaining: Vec<usize> = g
        .node_indices()
        .map(|i| g.neighbors_directed(i, Direction::Outgoing).count())
        .collect();
    let mut heap: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| remaining[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    let mut depth = vec![0usize; n];
    let mut prev: Vec<Option<NodeIndex>> = vec![None; n];
    while let Some(Reverse(i)) = heap.pop() {
        let ni = NodeIndex::new(i);
        order.push(ni);
        for dependent in g.neighbors_directed(ni, Direction::Incoming) {
            let j = dependent.index();
            if depth[i] + 1 > depth[j] {
                depth[j] = depth[i] + 1;
                prev[j] = Some(ni);
            }
            remaining[j] -= 1;
            if remaining[j] == 0 {
                heap.push(Reverse(j));
            }
        }
    }
    let max = depth.iter().copied().max().map_or(0, |m| m + 1);
    let mut levels = vec![Vec::new(); if n == 0 { 0 } else { max }];
    for &i in &order {
        levels[depth[i.index()]].push(i);
    }
    let mut critical = Vec::new();
    if let Some(&end) = order
        .iter()
        .max_by_key(|i| (depth[i.index()], Reverse(i.index())))
    {
        let mut cur = Some(end);
        while let Some(c) = cur {
            critical.push(c);
            cur = if depth[c.index()] == 0 {
                None
            } else {
                prev[c.index()]
            };
        }
        critical.reverse();
    }
    (order, levels, critical)
}

/// Declared-or-native platforms of a target (for reports).
pub fn target_platforms(r: &Resolved, i: usize) -> Vec<String> {
    let t = &r.targets[i];
    if t.get(A::Platforms).is_some() {
        Declared::of(r, i).iter().map(String::from).collect()
    } else {
        vec![r.local_platform.clone()]
    }
}

#[cfg(test)]
mod tests;
