//! The scheduler of `exec`: which build node starts when, with no daemon
//! in sight.
//!
//! [`Scheduler`] is a synchronous state machine over the plan: it holds the
//! nodes waiting for their needs, the ready nodes (per builder node, highest
//! [`priority`](super::priority) rank first, plan order among equals), the
//! `-j` and per-builder-node slots, and the outcome so far. [`drive`] runs
//! it against a [`Solver`]: it starts every node the state machine hands
//! out, feeds each solve's result back, reports `Queued` and `Skipped`, and
//! cancels the run on the first failure unless `keep_going`. Given the
//! solver's outcomes, in the order they arrive, everything it does is
//! deterministic; the BuildKit solver is in [`super`], fake ones in the
//! tests below.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use mybake_buildkit::CancellationToken;
use petgraph::graph::NodeIndex;
use petgraph::Direction;
use tokio::sync::mpsc;

use super::{Event, ExecOutcome, NodeError, NodeResult};
use crate::plan::{NodeKind, Plan};

/// One build node to solve.
#[derive(Debug, Clone)]
pub struct Job {
    pub node: NodeIndex,
    /// The builder node it runs on (index into the run's builder nodes).
    pub builder: usize,
    /// The results of the build nodes it needs, in [`Plan::needs`] order.
    pub deps: Vec<(NodeIndex, Arc<NodeResult>)>,
}

/// Runs one build node. The future ends with [`NodeError::Cancelled`] when
/// `cancel` (the run's token: fail-fast or Ctrl-C) stops it, and reports
/// the node's own progress events (`Started`, `Finished`, `Failed`,
/// `Cancelled`, ...); the scheduler reports `Queued` and `Skipped`.
pub trait Solver {
    fn solve(
        &self,
        job: Job,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<NodeResult, NodeError>>;
}

/// Slots: `-j` across the run, and `jobs=` of each builder node.
#[derive(Debug, Clone)]
pub struct Limits {
    pub jobs: Option<usize>,
    pub per_builder: Vec<usize>,
}

/// A ready node: rank, then plan order (earlier first), then the node.
type ReadyEntry = (u64, Reverse<usize>, NodeIndex);

/// The run state. Nodes start the moment the build nodes they need have
/// finished and both their builder node and the run have a free slot.
pub struct Scheduler<'p> {
    plan: &'p Plan,
    /// Build nodes in plan order.
    build_nodes: Vec<NodeIndex>,
    assigned: HashMap<NodeIndex, usize>,
    rank: HashMap<NodeIndex, u64>,
    position: HashMap<NodeIndex, usize>,
    keep_going: bool,
    global_cap: usize,
    caps: Vec<usize>,
    running: Vec<usize>,
    running_total: usize,
    ready: Vec<BinaryHeap<ReadyEntry>>,
    /// Build nodes not ready yet → how many of their needs have not finished.
    waiting: HashMap<NodeIndex, usize>,
    results: HashMap<NodeIndex, Arc<NodeResult>>,
    ended: HashSet<NodeIndex>,
    out: ExecOutcome,
}

/// What follows from a node's end.
#[derive(Debug, Default)]
pub struct Ended {
    /// Nodes that will not run because this one failed, with the reason.
    pub skipped: Vec<(NodeIndex, String)>,
    /// The run is to be cancelled (a failure under fail-fast).
    pub cancel_run: bool,
}

impl<'p> Scheduler<'p> {
    /// `assigned` maps every build node to its builder node, `rank` gives
    /// every build node its priority (see [`super::priority::ranks`]).
    pub fn new(
        plan: &'p Plan,
        assigned: HashMap<NodeIndex, usize>,
        rank: HashMap<NodeIndex, u64>,
        limits: &Limits,
        keep_going: bool,
    ) -> Scheduler<'p> {
        let build_nodes: Vec<NodeIndex> = plan
            .order
            .iter()
            .copied()
            .filter(|&n| plan.node(n).kind == NodeKind::Build)
            .collect();
        let position: HashMap<NodeIndex, usize> = plan
            .order
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, i))
            .collect();
        let builders = limits.per_builder.len();
        let mut s = Scheduler {
            plan,
            build_nodes,
            assigned,
            rank,
            position,
            keep_going,
            global_cap: limits.jobs.map_or(usize::MAX, |j| j.max(1)),
            caps: limits.per_builder.iter().map(|&c| c.max(1)).collect(),
            running: vec![0; builders],
            running_total: 0,
            ready: vec![BinaryHeap::new(); builders],
            waiting: HashMap::new(),
            results: HashMap::new(),
            ended: HashSet::new(),
            out: ExecOutcome::default(),
        };
        for i in 0..s.build_nodes.len() {
            let n = s.build_nodes[i];
            let needs = plan.needs(n).len();
            if needs == 0 {
                s.make_ready(n);
            } else {
                s.waiting.insert(n, needs);
            }
        }
        s
    }

    /// Build nodes in plan order.
    pub fn build_nodes(&self) -> &[NodeIndex] {
        &self.build_nodes
    }

    fn make_ready(&mut self, n: NodeIndex) {
        self.ready[self.assigned[&n]].push((self.rank[&n], Reverse(self.position[&n]), n));
    }

    /// The next node to start, if one is ready and slots allow: the highest
    /// ranked ready node among the builder nodes with a free slot. The
    /// caller starts it and reports its end through [`Scheduler::finish`].
    pub fn next(&mut self) -> Option<Job> {
        if self.running_total >= self.global_cap {
            return None;
        }
        let (_, b) = (0..self.caps.len())
            .filter(|&b| self.running[b] < self.caps[b])
            .filter_map(|b| self.ready[b].peek().map(|e| (*e, b)))
            .max()?;
        let (_, _, n) = self.ready[b].pop().expect("peeked");
        self.running[b] += 1;
        self.running_total += 1;
        let deps = self
            .plan
            .needs(n)
            .into_iter()
            .filter_map(|d| self.results.get(&d).map(|r| (d, r.clone())))
            .collect();
        Some(Job {
            node: n,
            builder: b,
            deps,
        })
    }

    /// Node `n`, started by [`Scheduler::next`], ended with `res`.
    pub fn finish(&mut self, n: NodeIndex, res: Result<NodeResult, NodeError>) -> Ended {
        let plan = self.plan;
        let b = self.assigned[&n];
        self.running[b] -= 1;
        self.running_total -= 1;
        self.ended.insert(n);
        let mut ended = Ended::default();
        match res {
            Ok(result) => {
                let result = Arc::new(result);
                self.out.results.insert(n, (*result).clone());
                self.results.insert(n, result);
                for d in plan.graph.neighbors_directed(n, Direction::Incoming) {
                    if let Some(w) = self.waiting.get_mut(&d) {
                        *w -= 1;
                        if *w == 0 {
                            self.waiting.remove(&d);
                            self.make_ready(d);
                        }
                    }
                }
            }
            Err(NodeError::Cancelled) => self.out.cancelled.push(n),
            Err(NodeError::Failed(e)) => {
                self.out.failures.push((n, e));
                // Everything that needs this node, directly or not, will not run.
                let failed = &plan.node(n).target_name;
                let mut stack = vec![n];
                while let Some(x) = stack.pop() {
                    for d in plan.graph.neighbors_directed(x, Direction::Incoming) {
                        if self.waiting.remove(&d).is_some() {
                            self.ended.insert(d);
                            self.out.skipped.push(d);
                            ended.skipped.push((d, format!("{failed} failed")));
                            stack.push(d);
                        }
                    }
                }
                ended.cancel_run = !self.keep_going;
            }
        }
        ended
    }

    /// The outcome, once nothing runs any more; the build nodes that never
    /// started (the run was cancelled) count as skipped and are returned.
    pub fn into_outcome(mut self) -> (ExecOutcome, Vec<NodeIndex>) {
        let never: Vec<NodeIndex> = self
            .build_nodes
            .iter()
            .copied()
            .filter(|n| !self.ended.contains(n))
            .collect();
        self.out.skipped.extend(&never);
        (self.out, never)
    }
}

/// Run every build node of the scheduler's plan on `solver`.
pub async fn drive<S: Solver + ?Sized>(
    mut s: Scheduler<'_>,
    solver: &S,
    events: &mpsc::UnboundedSender<Event>,
    cancel: &CancellationToken,
) -> ExecOutcome {
    let plan = s.plan;
    let id = |n: NodeIndex| plan.node(n).id.clone();
    for &n in s.build_nodes() {
        let _ = events.send(Event::Queued { node: id(n) });
    }
    let mut running = FuturesUnordered::new();
    loop {
        while !cancel.is_cancelled() {
            let Some(job) = s.next() else { break };
            let n = job.node;
            let solve = solver.solve(job, cancel.clone());
            running.push(async move { (n, solve.await) });
        }
        let Some((n, res)) = running.next().await else {
            break;
        };
        let ended = s.finish(n, res);
        for (d, reason) in ended.skipped {
            let _ = events.send(Event::Skipped {
                node: id(d),
                reason,
            });
        }
        if ended.cancel_run {
            cancel.cancel();
        }
    }
    // What never started: the run was cancelled (fail-fast or Ctrl-C).
    let (out, never) = s.into_outcome();
    for n in never {
        let _ = events.send(Event::Skipped {
            node: id(n),
            reason: "run cancelled".into(),
        });
    }
    out
}
