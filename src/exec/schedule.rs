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
use crate::plan::Plan;

/// One build node to solve.
#[derive(Debug, Clone)]
pub struct Job {
    pub node: NodeIndex,
    /// The builder node it runs on (index into the run's builder nodes).
    pub builder: usize,
    /// The results of the build nodes it needs, in [`Plan::needs`] order.
    /// A need on the same builder node may still be exporting: its result
    /// is then the LLB it handed over early ([`NodeResult::input`]).
    pub deps: Vec<(NodeIndex, Arc<NodeResult>)>,
    /// The needs assigned to the same builder node.
    pub here: Vec<NodeIndex>,
    /// Where a gateway build hands over its LLB result before it ends.
    pub early: EarlySender,
}

/// A node's result handed over before the node ends (its LLB, for the
/// dependents on its builder node).
pub type EarlySender = mpsc::UnboundedSender<(NodeIndex, NodeResult)>;

impl Job {
    /// Whether need `d` ran on this job's builder node.
    pub fn same_builder(&self, d: NodeIndex) -> bool {
        self.here.contains(&d)
    }
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
    /// Nodes that handed over their result early: their dependents on the
    /// same builder node were released then, not when they end.
    early: HashSet<NodeIndex>,
    early_tx: EarlySender,
    early_rx: Option<mpsc::UnboundedReceiver<(NodeIndex, NodeResult)>>,
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
        let (early_tx, early_rx) = mpsc::unbounded_channel();
        let build_nodes: Vec<NodeIndex> = plan
            .order
            .iter()
            .copied()
            .filter(|&n| plan.node(n).is_build())
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
            early: HashSet::new(),
            early_tx,
            early_rx: Some(early_rx),
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
    pub fn start_next(&mut self) -> Option<Job> {
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
        let needs = self.plan.needs(n);
        let here = needs
            .iter()
            .copied()
            .filter(|d| self.assigned.get(d) == Some(&b))
            .collect();
        let deps = needs
            .into_iter()
            .filter_map(|d| self.results.get(&d).map(|r| (d, r.clone())))
            .collect();
        Some(Job {
            node: n,
            builder: b,
            deps,
            here,
            early: self.early_tx.clone(),
        })
    }

    /// Node `n`, still running, handed over `res` (its LLB): the nodes
    /// on its builder node that need it no longer wait for it. A second
    /// hand-over (a retried solve) or one after the node ended changes
    /// nothing.
    pub fn early(&mut self, n: NodeIndex, res: NodeResult) {
        if self.ended.contains(&n) || !self.early.insert(n) {
            return;
        }
        self.results.insert(n, Arc::new(res));
        let b = self.assigned[&n];
        let plan = self.plan;
        for d in plan.graph.neighbors_directed(n, Direction::Incoming) {
            if self.assigned.get(&d) == Some(&b) {
                self.release(d);
            }
        }
    }

    /// `n` ended: the LLB results it needed, and its own if nothing needs
    /// it, are released once every node that needs them has ended
    /// (nothing will read them any more).
    fn release_inputs(&mut self, n: NodeIndex) {
        let plan = self.plan;
        let mut candidates = self.plan.needs(n);
        candidates.push(n);
        for m in candidates {
            let done = self.ended.contains(&m)
                && plan
                    .graph
                    .neighbors_directed(m, Direction::Incoming)
                    .filter(|&d| plan.node(d).is_build())
                    .all(|d| self.ended.contains(&d));
            if done {
                if let Some(input) = self.results.get(&m).and_then(|r| r.input.as_ref()) {
                    input.release();
                }
            }
        }
    }

    /// One more need of `d` is available.
    fn release(&mut self, d: NodeIndex) {
        if let Some(w) = self.waiting.get_mut(&d) {
            *w -= 1;
            if *w == 0 {
                self.waiting.remove(&d);
                self.make_ready(d);
            }
        }
    }

    /// Node `n`, started by [`Scheduler::start_next`], ended with `res`.
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
                let early = self.early.contains(&n);
                for d in plan.graph.neighbors_directed(n, Direction::Incoming) {
                    if !(early && self.assigned.get(&d) == Some(&b)) {
                        self.release(d);
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
        self.release_inputs(n);
        for &(d, _) in &ended.skipped {
            self.release_inputs(d);
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
    let mut early_rx = s.early_rx.take().expect("a scheduler is driven once");
    let id = |n: NodeIndex| plan.node(n).id.clone();
    for &n in s.build_nodes() {
        let _ = events.send(Event::Queued { node: id(n) });
    }
    let mut running = FuturesUnordered::new();
    loop {
        while !cancel.is_cancelled() {
            let Some(job) = s.start_next() else { break };
            let n = job.node;
            let solve = solver.solve(job, cancel.clone());
            running.push(async move { (n, solve.await) });
        }
        let next = tokio::select! {
            biased;
            Some((n, res)) = early_rx.recv() => {
                s.early(n, res);
                continue;
            }
            next = running.next() => next,
        };
        let Some((n, res)) = next else {
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

#[cfg(test)]
mod tests {
    //! The scheduling cases of `tests/it/scheduler.rs` over a fake solver:
    //! each solve runs until the test ends it (or the run's token cancels
    //! it), and the driver is polled by hand until nothing moves, so every
    //! step is deterministic: no runtime, no time.

    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use futures::channel::oneshot;
    use petgraph::graph::DiGraph;

    use super::*;
    use crate::plan::{Node, NodeKind};

    const AMD: &str = "linux/amd64";
    const ARM: &str = "linux/arm64";

    /// `ids`: `target@platform` for build nodes, `target` for merge nodes.
    /// `edges`: (node, what it needs).
    fn plan(ids: &[&str], edges: &[(&str, &str)]) -> Plan {
        let mut g = DiGraph::new();
        let mut ix = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            let (target, platform) = match id.split_once('@') {
                Some((t, p)) => (t, Some(p.to_string())),
                None => (*id, None),
            };
            let n = g.add_node(Node {
                id: id.to_string(),
                kind: match platform {
                    Some(platform) => NodeKind::Build { platform },
                    None => NodeKind::Merge,
                },
                target: i,
                target_name: target.into(),
                publish: true,
            });
            ix.insert(*id, n);
        }
        for (a, b) in edges {
            g.add_edge(ix[a], ix[b], ());
        }
        let (order, levels, critical_path) = crate::plan::analyse(&g);
        Plan {
            graph: g,
            order,
            levels,
            critical_path,
            platforms: Default::default(),
        }
    }

    fn find(plan: &Plan, id: &str) -> NodeIndex {
        plan.graph
            .node_indices()
            .find(|&n| plan.node(n).id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    enum End {
        Ok,
        Fail(String),
    }

    #[derive(Default)]
    struct FakeState {
        /// Running solves: builder node, and how to end them.
        running: HashMap<String, (usize, oneshot::Sender<End>)>,
        /// `start ID on B [deps]` / `end ID ok|failed|cancelled`, in order.
        log: Vec<String>,
        /// Where each running solve hands over its LLB result early.
        early: HashMap<String, (NodeIndex, EarlySender)>,
        /// Most solves running at once: in all, per builder node.
        max_total: usize,
        max_per_builder: HashMap<usize, usize>,
    }

    /// A solver whose solves end when the test says so, or when the run's
    /// token is cancelled (as a BuildKit solve does).
    struct Fake<'p> {
        plan: &'p Plan,
        /// Builder node names (for lost-builder messages).
        builders: Vec<&'static str>,
        state: Mutex<FakeState>,
        /// The LLB results handed over, by node.
        handed: Mutex<HashMap<String, Arc<crate::exec::LlbInput>>>,
    }

    impl Fake<'_> {
        fn reference(id: &str) -> String {
            format!("localhost:5000/{}@sha256:{id}", id.replace('@', "-"))
        }
    }

    impl Solver for Fake<'_> {
        fn solve(
            &self,
            job: Job,
            cancel: CancellationToken,
        ) -> BoxFuture<'_, Result<NodeResult, NodeError>> {
            let id = self.plan.node(job.node).id.clone();
            // A need's pushed reference, or `llb` for one handed over early.
            let deps: Vec<String> = job
                .deps
                .iter()
                .map(|(_, r)| match (&r.reference, &r.input) {
                    (Some(reference), _) => reference.clone(),
                    (None, Some(_)) => "llb".to_string(),
                    (None, None) => String::new(),
                })
                .collect();
            let (tx, rx) = oneshot::channel();
            {
                let mut st = self.state.lock().unwrap();
                st.early.insert(id.clone(), (job.node, job.early.clone()));
                st.log
                    .push(format!("start {id} on {} {deps:?}", job.builder));
                assert!(
                    st.running.insert(id.clone(), (job.builder, tx)).is_none(),
                    "{id} started twice"
                );
                st.max_total = st.max_total.max(st.running.len());
                let here = st.running.values().filter(|r| r.0 == job.builder).count();
                let m = st.max_per_builder.entry(job.builder).or_default();
                *m = (*m).max(here);
            }
            let builder = self.builders[job.builder].to_string();
            Box::pin(async move {
                let res = tokio::select! {
                    biased;
                    () = cancel.cancelled() => Err(NodeError::Cancelled),
                    end = rx => match end.expect("the test ends every solve") {
                        End::Ok => Ok(NodeResult {
                            exporter_response: HashMap::new(),
                            descriptor: None,
                            reference: Some(Fake::reference(&id)),
                            duration: std::time::Duration::ZERO,
                            steps: 1,
                            cached_steps: 0,
                            builder,
                            push_attempts: 1,
                            solve_ref: String::new(),
                            // As the BuildKit solver: the LLB it handed over.
                            input: self.handed.lock().unwrap().get(&id).cloned(),
                        }),
                        End::Fail(e) => Err(NodeError::Failed(e)),
                    },
                };
                let mut st = self.state.lock().unwrap();
                st.running.remove(&id);
                let how = match &res {
                    Ok(_) => "ok",
                    Err(NodeError::Failed(_)) => "failed",
                    Err(NodeError::Cancelled) => "cancelled",
                };
                st.log.push(format!("end {id} {how}"));
                res
            })
        }
    }

    /// One scheduled run over a fake solver.
    struct Run<'a> {
        fut: Pin<Box<dyn Future<Output = ExecOutcome> + 'a>>,
        fake: &'a Fake<'a>,
        events: mpsc::UnboundedReceiver<Event>,
        cancel: CancellationToken,
        outcome: Option<ExecOutcome>,
    }

    impl<'a> Run<'a> {
        /// `builder_of`: the builder node of a build node's platform.
        fn new(
            fake: &'a Fake<'a>,
            limits: Limits,
            keep_going: bool,
            builder_of: impl Fn(&str) -> usize,
        ) -> Run<'a> {
            let plan = fake.plan;
            Run::by_node(fake, limits, keep_going, |n| {
                builder_of(plan.node(n).platform().unwrap())
            })
        }

        /// `builder_of`: the builder node of each build node.
        fn by_node(
            fake: &'a Fake<'a>,
            limits: Limits,
            keep_going: bool,
            builder_of: impl Fn(NodeIndex) -> usize,
        ) -> Run<'a> {
            let plan = fake.plan;
            let assigned = plan
                .graph
                .node_indices()
                .filter(|&n| plan.node(n).is_build())
                .map(|n| (n, builder_of(n)))
                .collect();
            let rank = crate::exec::priority::ranks(plan, |_| 1);
            let (tx, events) = mpsc::unbounded_channel();
            let cancel = CancellationToken::new();
            let s = Scheduler::new(plan, assigned, rank, &limits, keep_going);
            let c = cancel.clone();
            let fut = Box::pin(async move { drive(s, fake, &tx, &c).await });
            let mut run = Run {
                fut,
                fake,
                events,
                cancel,
                outcome: None,
            };
            run.settle();
            run
        }

        /// Poll until nothing moves any more.
        fn settle(&mut self) {
            let mut cx = Context::from_waker(futures::task::noop_waker_ref());
            for _ in 0..100 {
                if self.outcome.is_some() {
                    return;
                }
                if let Poll::Ready(o) = self.fut.as_mut().poll(&mut cx) {
                    self.outcome = Some(o);
                }
            }
        }

        /// The running solves, sorted.
        fn running(&self) -> Vec<String> {
            let mut v: Vec<String> = self
                .fake
                .state
                .lock()
                .unwrap()
                .running
                .keys()
                .cloned()
                .collect();
            v.sort();
            v
        }

        fn end(&mut self, id: &str, end: End) {
            let (_, tx) = self
                .fake
                .state
                .lock()
                .unwrap()
                .running
                .remove(id)
                .unwrap_or_else(|| panic!("{id} is not running: {:?}", self.log()));
            let _ = tx.send(end);
            self.settle();
        }

        /// Running solve `id` hands over its result as LLB (a gateway
        /// build whose result is built and now exports).
        fn hand_over(&mut self, id: &str) {
            let (n, tx) = self.fake.state.lock().unwrap().early[id].clone();
            let llb = Arc::new(crate::exec::LlbInput::new(
                mybake_buildkit::FrontendInput {
                    definition: Default::default(),
                    image_config: None,
                },
                None,
            ));
            self.fake
                .handed
                .lock()
                .unwrap()
                .insert(id.to_string(), llb.clone());
            let _ = tx.send((
                n,
                NodeResult {
                    exporter_response: HashMap::new(),
                    descriptor: None,
                    reference: None,
                    duration: std::time::Duration::ZERO,
                    steps: 0,
                    cached_steps: 0,
                    builder: String::new(),
                    push_attempts: 0,
                    solve_ref: String::new(),
                    input: Some(llb),
                },
            ));
            self.settle();
        }

        /// Builder node `b` goes away: each of its solves fails, naming
        /// its node and the builder node (as the BuildKit solver does).
        fn lose_builder(&mut self, b: usize) {
            let lost: Vec<(String, oneshot::Sender<End>)> = {
                let mut st = self.fake.state.lock().unwrap();
                let ids: Vec<String> = st
                    .running
                    .iter()
                    .filter(|(_, r)| r.0 == b)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.into_iter()
                    .map(|id| {
                        let (_, tx) = st.running.remove(&id).unwrap();
                        (id, tx)
                    })
                    .collect()
            };
            for (id, tx) in lost {
                let name = self.fake.builders[b];
                let _ = tx.send(End::Fail(format!(
                    "{id} (builder {name}): transport error: connection reset"
                )));
            }
            self.settle();
        }

        fn log(&self) -> Vec<String> {
            self.fake.state.lock().unwrap().log.clone()
        }

        fn starts(&self) -> Vec<String> {
            self.log()
                .iter()
                .filter_map(|l| l.strip_prefix("start "))
                .map(|l| l.split(' ').next().unwrap().to_string())
                .collect()
        }

        /// `queued ID` / `skipped ID: REASON`, in order.
        fn events(&mut self) -> Vec<String> {
            let mut v = Vec::new();
            while let Ok(e) = self.events.try_recv() {
                match e {
                    Event::Queued { node } => v.push(format!("queued {node}")),
                    Event::Skipped { node, reason } => v.push(format!("skipped {node}: {reason}")),
                    other => panic!("the scheduler sent {other:?}"),
                }
            }
            v
        }

        /// Ends, one at a time in name order, whatever runs until the run
        /// is over.
        fn run_out(&mut self) -> ExecOutcome {
            while self.outcome.is_none() {
                let running = self.running();
                let first = running
                    .first()
                    .unwrap_or_else(|| {
                        panic!("the run hangs with nothing running: {:?}", self.log())
                    })
                    .clone();
                self.end(&first, End::Ok);
            }
            self.outcome.take().unwrap()
        }

        fn outcome(&mut self) -> ExecOutcome {
            self.outcome
                .take()
                .unwrap_or_else(|| panic!("the run is not over: {:?}", self.log()))
        }
    }

    fn fake<'p>(plan: &'p Plan, builders: &[&'static str]) -> Fake<'p> {
        Fake {
            plan,
            builders: builders.to_vec(),
            state: Mutex::default(),
            handed: Mutex::default(),
        }
    }

    fn one_builder(jobs: Option<usize>) -> Limits {
        Limits {
            jobs,
            per_builder: vec![super::super::builders::DEFAULT_NODE_JOBS],
        }
    }

    fn ids(plan: &Plan, v: &[NodeIndex]) -> Vec<String> {
        v.iter().map(|&n| plan.node(n).id.clone()).collect()
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    /// `a-leaf` and `base` are both ready at the start and `a-leaf` comes
    /// first in plan order, but `base` has `app` waiting on it: with one
    /// slot, `base` starts first, and `app` only once `base` is done.
    #[test]
    fn jobs_1_runs_the_critical_path_first() {
        let p = plan(
            &[
                "a-leaf@linux/amd64",
                "base@linux/amd64",
                "app@linux/amd64",
                "a-leaf",
                "app",
            ],
            &[
                ("app@linux/amd64", "base@linux/amd64"),
                ("a-leaf", "a-leaf@linux/amd64"),
                ("app", "app@linux/amd64"),
            ],
        );
        let pos = |id: &str| p.order.iter().position(|&n| n == find(&p, id));
        assert!(
            pos("a-leaf@linux/amd64") < pos("base@linux/amd64"),
            "test premise: leaf comes first in plan order"
        );
        let f = fake(&p, &["docker"]);
        let mut run = Run::new(&f, one_builder(Some(1)), false, |_| 0);
        assert_eq!(run.running(), ["base@linux/amd64"]);
        let out = run.run_out();
        let log = run.log();
        assert_eq!(run.starts()[0], "base@linux/amd64", "{log:?}");
        let started = |id: &str| {
            log.iter()
                .position(|l| l.starts_with(&format!("start {id} ")))
        };
        let ended = |id: &str| {
            log.iter()
                .position(|l| l.starts_with(&format!("end {id} ")))
        };
        assert!(
            started("app@linux/amd64") > ended("base@linux/amd64"),
            "{log:?}"
        );
        assert_eq!(
            f.state.lock().unwrap().max_total,
            1,
            "-j 1 overlapped: {log:?}"
        );
        assert_eq!(out.results.len(), 3);
        // app was built on base's result.
        let app = log.iter().find(|l| l.starts_with("start app@")).unwrap();
        assert!(
            app.ends_with(&format!("{:?}", [Fake::reference("base@linux/amd64")])),
            "{app}"
        );
    }

    fn fan_out(k: usize) -> Plan {
        let builds: Vec<String> = (0..k).map(|i| format!("t{i}@{AMD}")).collect();
        let merges: Vec<String> = (0..k).map(|i| format!("t{i}")).collect();
        let all: Vec<&str> = builds.iter().chain(&merges).map(String::as_str).collect();
        let edges: Vec<(&str, &str)> = merges
            .iter()
            .zip(&builds)
            .map(|(m, b)| (m.as_str(), b.as_str()))
            .collect();
        plan(&all, &edges)
    }

    /// `-j N` caps the solves running at once, and the cap is reached: four
    /// independent nodes never overlap with `-j 1`, and all run at once
    /// without `-j`.
    #[test]
    fn jobs_caps_concurrent_solves() {
        const K: usize = 4;
        let p = fan_out(K);
        for (jobs, want) in [
            (Some(1), 1),
            (Some(0), 1),
            (Some(2), 2),
            (Some(3), 3),
            (None, K),
        ] {
            let f = fake(&p, &["docker"]);
            let mut run = Run::new(&f, one_builder(jobs), false, |_| 0);
            assert_eq!(run.running().len(), want, "-j {jobs:?} at the start");
            let out = run.run_out();
            assert_eq!(out.results.len(), K, "-j {jobs:?}");
            assert!(out.failures.is_empty() && out.skipped.is_empty());
            assert_eq!(
                f.state.lock().unwrap().max_total,
                want,
                "-j {jobs:?}: {:?}",
                run.log()
            );
        }
    }

    /// Each node runs on the builder node it was assigned, within that
    /// node's `jobs=`.
    #[test]
    fn builder_nodes_get_their_own_nodes_within_their_slots() {
        let p = plan(
            &[
                "a@linux/amd64",
                "b@linux/amd64",
                "c@linux/amd64",
                "a@linux/arm64",
                "b@linux/arm64",
                "c@linux/arm64",
            ],
            &[],
        );
        let f = fake(&p, &["amd", "arm"]);
        let limits = Limits {
            jobs: None,
            per_builder: vec![1, 2],
        };
        let builder_of = |platform: &str| usize::from(platform == ARM);
        let mut run = Run::new(&f, limits, false, builder_of);
        assert_eq!(run.running().len(), 3);
        let out = run.run_out();
        assert_eq!(out.results.len(), 6);
        let st = f.state.lock().unwrap();
        assert_eq!(st.max_per_builder[&0], 1, "{:?}", st.log);
        assert_eq!(st.max_per_builder[&1], 2, "{:?}", st.log);
        for l in &st.log {
            if let Some(rest) = l.strip_prefix("start ") {
                let on = if rest.contains(AMD) { "on 0" } else { "on 1" };
                assert!(rest.contains(on), "{l}");
            }
        }
        for (n, r) in &out.results {
            let want = if p.node(*n).id.ends_with(AMD) {
                "amd"
            } else {
                "arm"
            };
            assert_eq!(r.builder, want);
        }
    }

    /// `app` needs `base` per platform: app@arm64 waits for base@arm64
    /// only, and so starts while base@amd64 is still building.
    #[test]
    fn dependent_platform_starts_before_other_platform_of_its_dependency_finishes() {
        let p = plan(
            &[
                "base@linux/amd64",
                "base@linux/arm64",
                "app@linux/amd64",
                "app@linux/arm64",
                "app",
            ],
            &[
                ("app@linux/amd64", "base@linux/amd64"),
                ("app@linux/arm64", "base@linux/arm64"),
                ("app", "app@linux/amd64"),
                ("app", "app@linux/arm64"),
            ],
        );
        let f = fake(&p, &["docker"]);
        let mut run = Run::new(&f, one_builder(None), false, |_| 0);
        assert_eq!(run.running(), ["base@linux/amd64", "base@linux/arm64"]);
        run.end("base@linux/arm64", End::Ok);
        assert_eq!(run.running(), ["app@linux/arm64", "base@linux/amd64"]);
        run.end("app@linux/arm64", End::Ok);
        assert_eq!(run.running(), ["base@linux/amd64"]);
        run.end("base@linux/amd64", End::Ok);
        assert_eq!(run.running(), ["app@linux/amd64"]);
        run.end("app@linux/amd64", End::Ok);
        let out = run.outcome();
        assert_eq!(out.results.len(), 4);
        // Each app platform was built on its own base platform's result.
        for pl in [AMD, ARM] {
            let start = run
                .log()
                .into_iter()
                .find(|l| l.starts_with(&format!("start app@{pl} ")))
                .unwrap();
            assert!(
                start.ends_with(&format!("{:?}", [Fake::reference(&format!("base@{pl}"))])),
                "{start}"
            );
        }
    }

    /// bad, slow and later are independent, after needs bad; -j 2.
    fn bad_and_slow() -> Plan {
        plan(
            &[
                "bad@linux/amd64",
                "slow@linux/amd64",
                "later@linux/amd64",
                "after@linux/amd64",
                "after2@linux/amd64",
            ],
            &[
                ("after@linux/amd64", "bad@linux/amd64"),
                ("after2@linux/amd64", "after@linux/amd64"),
            ],
        )
    }

    const BAD: &str = "bad@linux/amd64";
    const SLOW: &str = "slow@linux/amd64";

    /// The first failure cancels what runs (it ends as cancelled, not
    /// failed), starts nothing more, and skips the rest.
    #[test]
    fn fail_fast_cancels_the_rest() {
        let p = bad_and_slow();
        let f = fake(&p, &["docker"]);
        let mut run = Run::new(&f, one_builder(Some(2)), false, |_| 0);
        assert_eq!(run.running(), [BAD, SLOW]);
        run.end(
            BAD,
            End::Fail(format!("{BAD} (builder docker): exit code 1")),
        );
        assert!(run.cancel.is_cancelled(), "fail-fast cancels the run");
        let out = run.outcome();
        assert_eq!(
            run.starts(),
            [BAD, SLOW],
            "nothing starts after the failure"
        );
        assert_eq!(
            out.failures,
            [(
                find(&p, BAD),
                format!("{BAD} (builder docker): exit code 1")
            )]
        );
        assert_eq!(ids(&p, &out.cancelled), [SLOW]);
        assert!(out.results.is_empty());
        assert_eq!(
            ids(&p, &out.skipped),
            [
                "after@linux/amd64",
                "after2@linux/amd64",
                "later@linux/amd64"
            ]
        );
        let ev = run.events();
        assert_eq!(
            ev[ev.len() - 3..],
            [
                "skipped after@linux/amd64: bad failed",
                "skipped after2@linux/amd64: bad failed",
                "skipped later@linux/amd64: run cancelled",
            ]
        );
        assert_eq!(ev.iter().filter(|e| e.starts_with("queued ")).count(), 5);
    }

    /// With keep_going a failure skips only what needs it (transitively);
    /// the rest runs to the end, taking the freed slot.
    #[test]
    fn keep_going_finishes_the_rest() {
        let p = bad_and_slow();
        let f = fake(&p, &["docker"]);
        let mut run = Run::new(&f, one_builder(Some(2)), true, |_| 0);
        assert_eq!(run.running(), [BAD, SLOW]);
        run.end(BAD, End::Fail(format!("{BAD}: exit code 1")));
        assert!(!run.cancel.is_cancelled());
        assert_eq!(run.running(), ["later@linux/amd64", SLOW]);
        run.end(SLOW, End::Ok);
        run.end("later@linux/amd64", End::Ok);
        let out = run.outcome();
        assert_eq!(
            ids(&p, &out.failures.iter().map(|f| f.0).collect::<Vec<_>>()),
            [BAD]
        );
        assert!(out.cancelled.is_empty());
        assert_eq!(
            ids(&p, &out.skipped),
            ["after@linux/amd64", "after2@linux/amd64"]
        );
        assert_eq!(
            sorted(ids(&p, &out.results.keys().copied().collect::<Vec<_>>())),
            ["later@linux/amd64", SLOW]
        );
        let ev = run.events();
        assert_eq!(
            ev[ev.len() - 2..],
            [
                "skipped after@linux/amd64: bad failed",
                "skipped after2@linux/amd64: bad failed",
            ]
        );
    }

    /// Ctrl-C (the run's token cancelled from outside): the running solves
    /// end cancelled, nothing else starts, nothing counts as failed.
    #[test]
    fn cancellation_stops_the_run() {
        let p = bad_and_slow();
        let f = fake(&p, &["docker"]);
        let mut run = Run::new(&f, one_builder(Some(2)), false, |_| 0);
        assert_eq!(run.running(), [BAD, SLOW]);
        run.cancel.cancel();
        run.settle();
        let out = run.outcome();
        assert_eq!(run.starts(), [BAD, SLOW]);
        assert!(out.failures.is_empty() && out.results.is_empty());
        assert_eq!(sorted(ids(&p, &out.cancelled)), [BAD, SLOW]);
        assert_eq!(
            ids(&p, &out.skipped),
            [
                "later@linux/amd64",
                "after@linux/amd64",
                "after2@linux/amd64"
            ]
        );
        let ev = run.events();
        assert!(
            ev[ev.len() - 3..]
                .iter()
                .all(|e| e.ends_with(": run cancelled")),
            "{ev:?}"
        );
    }

    /// A builder node that goes away fails the nodes it was running, each
    /// under its own name (not as cancelled), and fails the run fast: the
    /// other builder node's solve is cancelled, dependents are skipped.
    #[test]
    fn builder_disappearing_fails_the_run_naming_the_node() {
        let p = plan(
            &["x@linux/amd64", "x@linux/arm64", "y@linux/arm64"],
            &[("y@linux/arm64", "x@linux/arm64")],
        );
        let f = fake(&p, &["amd", "flaky-node"]);
        let limits = Limits {
            jobs: None,
            per_builder: vec![4, 4],
        };
        let mut run = Run::new(&f, limits, false, |pl| usize::from(pl == ARM));
        assert_eq!(run.running(), ["x@linux/amd64", "x@linux/arm64"]);
        run.lose_builder(1);
        let out = run.outcome();
        assert_eq!(out.failures.len(), 1, "{:?}", out.failures);
        let (n, error) = &out.failures[0];
        assert_eq!(p.node(*n).id, "x@linux/arm64");
        assert!(
            error.contains("x@linux/arm64") && error.contains("flaky-node"),
            "{error}"
        );
        assert_eq!(ids(&p, &out.cancelled), ["x@linux/amd64"]);
        assert_eq!(ids(&p, &out.skipped), ["y@linux/arm64"]);
        let ev = run.events();
        assert_eq!(ev.last().unwrap(), "skipped y@linux/arm64: x failed");
    }

    /// A run on two builder nodes: `far@linux/amd64` on the second, the
    /// rest on the first.
    fn far_on_the_second<'a>(f: &'a Fake<'a>) -> Run<'a> {
        let far = find(f.plan, "far@linux/amd64");
        let limits = Limits {
            jobs: None,
            per_builder: vec![8, 8],
        };
        Run::by_node(f, limits, false, |n| usize::from(n == far))
    }

    /// A gateway build hands its LLB over before it exports: the nodes on
    /// its builder node that need it start then, with the LLB; a node on
    /// another builder node waits for the pushed result. A node needing
    /// two results waits for both, and the hand-over and the end of one
    /// count once.
    #[test]
    fn a_hand_over_starts_the_dependents_on_its_builder_node_only() {
        let p = plan(
            &[
                "base@linux/amd64",
                "lib@linux/amd64",
                "app@linux/amd64",
                "both@linux/amd64",
                "far@linux/amd64",
            ],
            &[
                ("app@linux/amd64", "base@linux/amd64"),
                ("both@linux/amd64", "base@linux/amd64"),
                ("both@linux/amd64", "lib@linux/amd64"),
                ("far@linux/amd64", "base@linux/amd64"),
            ],
        );
        let f = fake(&p, &["one", "two"]);
        let mut run = far_on_the_second(&f);
        assert_eq!(run.running(), ["base@linux/amd64", "lib@linux/amd64"]);
        run.hand_over("base@linux/amd64");
        assert_eq!(
            run.running(),
            ["app@linux/amd64", "base@linux/amd64", "lib@linux/amd64"]
        );
        assert!(run
            .log()
            .contains(&r#"start app@linux/amd64 on 0 ["llb"]"#.to_string()));
        // Handed over again (a retried solve): nothing more starts.
        run.hand_over("base@linux/amd64");
        run.end("base@linux/amd64", End::Ok);
        // `far` (another builder node) gets the pushed result; `both`
        // still waits for `lib`, although base was released twice.
        assert_eq!(
            run.running(),
            ["app@linux/amd64", "far@linux/amd64", "lib@linux/amd64"]
        );
        let pushed = Fake::reference("base@linux/amd64");
        assert!(run
            .log()
            .contains(&format!("start far@linux/amd64 on 1 [{pushed:?}]")));
        run.end("lib@linux/amd64", End::Ok);
        assert!(run.running().contains(&"both@linux/amd64".to_string()));
        // base's LLB (and its session) is kept while a node needing it runs.
        let base_llb = f.handed.lock().unwrap()["base@linux/amd64"].clone();
        run.end("app@linux/amd64", End::Ok);
        run.end("far@linux/amd64", End::Ok);
        assert!(!base_llb.is_released(), "both still runs");
        run.end("both@linux/amd64", End::Ok);
        assert!(base_llb.is_released());
        let out = run.run_out();
        assert_eq!(out.results.len(), 5);
        assert!(out.failures.is_empty());
    }

    /// A node whose export fails after it handed its LLB over fails the
    /// run: its dependent, already running, is cancelled (fail-fast), and
    /// a dependent on another builder node never starts.
    #[test]
    fn a_failure_after_the_hand_over_fails_the_run() {
        let p = plan(
            &["base@linux/amd64", "app@linux/amd64", "far@linux/amd64"],
            &[
                ("app@linux/amd64", "base@linux/amd64"),
                ("far@linux/amd64", "base@linux/amd64"),
            ],
        );
        let f = fake(&p, &["one", "two"]);
        let mut run = far_on_the_second(&f);
        run.hand_over("base@linux/amd64");
        assert_eq!(run.running(), ["app@linux/amd64", "base@linux/amd64"]);
        run.end("base@linux/amd64", End::Fail("push refused".into()));
        let out = run.outcome();
        assert_eq!(
            ids(&p, &out.failures.iter().map(|f| f.0).collect::<Vec<_>>()),
            ["base@linux/amd64"]
        );
        assert_eq!(ids(&p, &out.cancelled), ["app@linux/amd64"]);
        assert_eq!(ids(&p, &out.skipped), ["far@linux/amd64"]);
    }
}
