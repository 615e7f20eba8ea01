//! What the publish phase gets from a run's results: the targets ready
//! for their index and tags, and the file outputs ready to be placed.

use crate::exec;
use crate::plan::Plan;
use crate::publish::outputs::{self, FileOutput};
use crate::resolve::Resolved;

/// Targets whose every platform was built and pushed by digest, ready for
/// their index and tags.
pub(super) fn publish_targets(
    r: &Resolved,
    plan: &Plan,
    o: &exec::ExecOutcome,
    allowed: bool,
) -> Vec<crate::publish::TargetPublish> {
    let mut out = Vec::new();
    if !allowed {
        return out;
    }
    for m in plan
        .graph
        .node_indices()
        .filter(|&n| plan.node(n).is_merge())
    {
        let target = plan.node(m).target;
        if !outcome_pushed(plan, o, target) {
            continue;
        }
        let t = &r.targets[target];
        let mut results = Vec::new();
        let mut complete = true;
        for n in plan.needs(m) {
            match o.results.get(&n).and_then(|res| res.descriptor.clone()) {
                Some(descriptor) => results.push(crate::publish::PlatformResult {
                    platform: plan.node(n).platform().unwrap_or_default().to_string(),
                    descriptor,
                }),
                None => complete = false,
            }
        }
        if !complete {
            continue;
        }
        let annotations = t
            .get(crate::attrs::A::Annotation)
            .and_then(crate::value::Value::as_map)
            .map(|m| {
                m.iter()
                    .map(|(k, e)| (k.clone(), e.value.v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let tags: Vec<String> = t
            .list(crate::attrs::A::Tags)
            .iter()
            .map(|s| s.v.clone())
            .collect();
        let source = tags.first().map(|tg| exec::request::repository_of(tg));
        out.push(crate::publish::TargetPublish {
            name: t.name.v.clone(),
            tags,
            annotations,
            results,
            source,
        });
    }
    out
}

fn outcome_pushed(plan: &Plan, o: &exec::ExecOutcome, target: usize) -> bool {
    plan.graph.node_indices().any(|n| {
        plan.node(n).target == target
            && plan.node(n).publish
            && o.results.get(&n).is_some_and(|r| r.reference.is_some())
    })
}

/// Requested targets with file outputs whose every platform was built
/// (`allowed`: the run may publish), with what their placement needs.
pub(super) fn file_outputs(
    r: &Resolved,
    plan: &Plan,
    o: &exec::ExecOutcome,
    allowed: bool,
    file_targets: &[(String, Vec<FileOutput>)],
) -> Vec<outputs::TargetFiles> {
    let mut out = Vec::new();
    if !allowed {
        return out;
    }
    for m in plan
        .graph
        .node_indices()
        .filter(|&n| plan.node(n).is_merge())
    {
        let t = &r.targets[plan.node(m).target];
        let Some((_, outs)) = file_targets.iter().find(|(n, _)| n == &t.name.v) else {
            continue;
        };
        let needs = plan.needs(m);
        if !needs.iter().all(|n| o.results.contains_key(n)) {
            continue;
        }
        out.push(outputs::TargetFiles {
            name: t.name.v.clone(),
            tags: t
                .list(crate::attrs::A::Tags)
                .iter()
                .map(|s| s.v.clone())
                .collect(),
            annotations: t
                .get(crate::attrs::A::Annotation)
                .and_then(crate::value::Value::as_map)
                .map(|m| {
                    m.iter()
                        .map(|(k, e)| (k.clone(), e.value.v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            platforms: needs
                .iter()
                .map(|&n| plan.node(n).platform().unwrap_or_default().to_string())
                .collect(),
            descriptors: needs
                .iter()
                .map(|n| o.results.get(n).and_then(|res| res.descriptor.clone()))
                .collect(),
            outputs: outs.clone(),
        });
    }
    out
}
