//! Which ready build node goes first when slots are scarce: the one with the
//! longest chain of work still hanging off it (critical-path-first list
//! scheduling). A leaf that nothing waits for can start later without
//! delaying the run; a node on the longest remaining chain cannot.

use std::collections::HashMap;

use petgraph::graph::NodeIndex;
use petgraph::Direction;

use crate::plan::Plan;

/// Relative cost of a node whose platform the builder emulates (qemu runs
/// `RUN` steps several times slower than native). Only the order of ready
/// nodes depends on it.
pub const EMULATED_WEIGHT: u64 = 4;
pub const NATIVE_WEIGHT: u64 = 1;

/// Rank of each build node: its own weight plus the heaviest chain of build
/// nodes that (transitively) need it. Higher runs first.
pub fn ranks(plan: &Plan, weight: impl Fn(NodeIndex) -> u64) -> HashMap<NodeIndex, u64> {
    let mut rank: HashMap<NodeIndex, u64> = HashMap::new();
    // `order` lists dependencies first, so walking it backwards sees every
    // dependent before the nodes it needs.
    for &n in plan.order.iter().rev() {
        if !plan.node(n).is_build() {
            continue;
        }
        let below = plan
            .graph
            .neighbors_directed(n, Direction::Incoming)
            .filter_map(|d| rank.get(&d).copied())
            .max()
            .unwrap_or(0);
        rank.insert(n, weight(n) + below);
    }
    rank
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Node, NodeKind};
    use petgraph::graph::DiGraph;

    fn node(id: &str) -> Node {
        Node {
            id: id.into(),
            kind: NodeKind::Build {
                platform: "linux/amd64".into(),
            },
            target: 0,
            target_name: id.into(),
            publish: true,
        }
    }

    /// base ← lib ← svc1, base ← svc2 (edges point at what a node needs).
    fn sample() -> (Plan, [NodeIndex; 4]) {
        let mut g = DiGraph::new();
        let base = g.add_node(node("base"));
        let lib = g.add_node(node("lib"));
        let svc1 = g.add_node(node("svc1"));
        let svc2 = g.add_node(node("svc2"));
        g.add_edge(lib, base, ());
        g.add_edge(svc1, lib, ());
        g.add_edge(svc2, base, ());
        let (order, levels, critical_path) = crate::plan::analyse(&g);
        let plan = Plan {
            graph: g,
            order,
            levels,
            critical_path,
            platforms: Default::default(),
        };
        (plan, [base, lib, svc1, svc2])
    }

    #[test]
    fn longest_remaining_chain_ranks_highest() {
        let (plan, [base, lib, svc1, svc2]) = sample();
        let r = ranks(&plan, |_| 1);
        assert_eq!(r[&base], 3);
        assert_eq!(r[&lib], 2);
        assert_eq!(r[&svc1], 1);
        assert_eq!(r[&svc2], 1);
    }

    #[test]
    fn weights_follow_the_chain() {
        let (plan, [base, lib, svc1, svc2]) = sample();
        // svc2 is emulated: the chain base → svc2 now outweighs base → lib → svc1.
        let r = ranks(&plan, |n| {
            if n == svc2 {
                EMULATED_WEIGHT
            } else {
                NATIVE_WEIGHT
            }
        });
        assert_eq!(r[&svc2], 4);
        assert_eq!(r[&lib], 2);
        assert_eq!(r[&base], 5);
        assert!(r[&svc2] > r[&svc1]);
    }
}
