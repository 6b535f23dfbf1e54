//! Task graphs and priorities end to end, through real agent processes: outputs along
//! edges in order, failures that name their dependency, cycles refused, priorities with
//! aging, a 100,000-node random DAG under SIGKILL chaos, and the patterns built on graphs.

mod common;
#[path = "common/swarm.rs"]
mod swarm;

use neuralflow_swarm::cgroup::Limits;
use neuralflow_swarm::coord::{
    Graph, GraphError, MapReduce, NodeId, PatternError, Pipeline, ScatterGather, Vote,
};
use neuralflow_swarm::supervisor::{
    AgentClass, Error, GraphFlow, GraphNode, NodeEnd, Scheduling, Shutdown, Supervisor,
};
use neuralflow_swarm::task::{kinds, Failure, Outcome, TaskSpec, ECHO_XOR};
use std::sync::Arc;
use std::time::Duration;

const WATCHDOG: Duration = common::WATCHDOG;

/// These tests share two cores: one at a time, so their timing holds.
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

use swarm::builder;

fn xor(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b ^ ECHO_XOR).collect()
}

fn every_buffer_comes_back(sup: &Supervisor) {
    swarm::every_buffer_comes_back(sup, WATCHDOG);
}

fn output(end: &NodeEnd) -> &[u8] {
    match &end.outcome {
        Outcome::Completed { output, .. } => output,
        other => panic!("{other:?}"),
    }
}

/// a → (b, c) → d, and e → c: b and c both take a's output (one kept copy, shared), c and d
/// take theirs in the order given; nodes with dependents hand their outputs on and return nothing.
#[test]
fn a_diamond_hands_outputs_along_its_edges_in_order() {
    let _serial = SERIAL.lock();
    let sup = builder(2).build().unwrap();
    for len in [10, 100_000] {
        let payload = neuralflow_swarm::task::echo_pattern(len, len as u64);
        let mut g = Graph::new();
        let d = g.add(TaskSpec::new(kinds::CONCAT, 0));
        let a = g.add(TaskSpec::new(kinds::ECHO, 0).with_bytes(payload.clone()));
        let e = g.add(TaskSpec::new(kinds::ECHO, 0).with_bytes(b"second".to_vec()));
        let b = g.add_after(TaskSpec::new(kinds::ECHO, 0), &[a]);
        let c = g.add_after(TaskSpec::new(kinds::CONCAT, 0), &[a, e]);
        g.depend(d, b);
        g.depend(d, c);
        let ends = g.submit(&sup).unwrap().wait_all(Some(WATCHDOG)).unwrap();
        for n in [a, b, c, e] {
            assert!(output(&ends[n.0]).is_empty(), "{n} handed its output on");
        }
        // b: echo of a's output gives the payload back; c: a's output, then e's.
        let want = [payload.clone(), xor(&payload), xor(b"second")].concat();
        assert!(output(&ends[d.0]) == want, "d got its inputs in order");
        // Each node ran after its dependencies ended.
        for (child, parents) in [(b, vec![a]), (c, vec![a]), (d, vec![b, c])] {
            for p in parents {
                assert!(ends[child.0].timing.dispatched_ns >= ends[p.0].timing.ended_ns);
            }
        }
    }
    every_buffer_comes_back(&sup);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// A dependency that fails fails its dependents, naming it, down the graph; a dependent
/// that tolerates failed dependencies runs with an empty input in its place; a cancelled
/// node fails its dependents the same way.
#[test]
fn a_failed_dependency_fails_its_dependents_and_names_it() {
    let _serial = SERIAL.lock();
    let sup = builder(2).quarantine_after(1).build().unwrap();
    let mut g = Graph::new();
    let bad = g.add(TaskSpec::new(kinds::CRASH, 0));
    let good = g.add(TaskSpec::new(kinds::ECHO, 0).with_bytes(b"kept".to_vec()));
    let child = g.add_after(TaskSpec::new(kinds::CONCAT, 0), &[good, bad]);
    let grandchild = g.add_after(TaskSpec::new(kinds::ECHO, 0), &[child]);
    let tolerant = g.add_after(TaskSpec::new(kinds::CONCAT, 0), &[bad, good]);
    g.tolerate_failed(tolerant);
    let mut run = g.submit(&sup).unwrap();
    let mut ends: Vec<Option<NodeEnd>> = (0..5).map(|_| None).collect();
    while let Some((n, end)) = run.join_next(Some(WATCHDOG)) {
        ends[n.0] = Some(end);
    }
    drop(run);
    let ends: Vec<NodeEnd> = ends.into_iter().map(Option::unwrap).collect();
    assert!(matches!(
        ends[bad.0].outcome,
        Outcome::Failed(Failure::Quarantined(_))
    ));
    let dependency_of = |n: NodeId| match &ends[n.0].outcome {
        Outcome::Failed(Failure::Dependency { dependency }) => *dependency,
        other => panic!("{n}: {other:?}"),
    };
    assert_eq!(dependency_of(child), ends[bad.0].id);
    assert_eq!(dependency_of(grandchild), ends[child.0].id);
    assert_eq!(output(&ends[tolerant.0]), xor(b"kept"));
    // Cancelling a node that others wait for fails them too.
    let nodes = vec![
        GraphNode::new("sleep:10s".parse().unwrap(), vec![]),
        GraphNode::new(TaskSpec::new(kinds::NOOP, 0), vec![0]),
    ];
    let mut run = sup.submit_graph(nodes).unwrap();
    assert!(sup.cancel(run.task_id(0).unwrap()));
    let mut got = Vec::new();
    while let Some(end) = run.join_next(Some(WATCHDOG)) {
        got.push(end);
    }
    got.sort_by_key(|e| e.node);
    assert!(matches!(
        got[0].outcome,
        Outcome::Failed(Failure::Cancelled(_))
    ));
    assert!(
        matches!(got[1].outcome, Outcome::Failed(Failure::Dependency { dependency }) if dependency == got[0].id)
    );
    drop(run);
    every_buffer_comes_back(&sup);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// Flow control: with one source at a time, the next source starts only once the one
/// before has ended, while its slow consumer may still run; with an edge limit too, only
/// once that consumer has ended (its input no longer waits on an edge).
#[test]
fn graph_flow_lets_sources_in_within_its_limits() {
    let _serial = SERIAL.lock();
    let chains = 6;
    // (source, consumer) ends by chain, sorted by the source's dispatch.
    let run = |flow: GraphFlow| {
        let sup = builder(2).graph_flow(flow).build().unwrap();
        let mut nodes = Vec::new();
        for c in 0..chains {
            // 100 KiB: kept in page buffers, not inline.
            let payload = vec![c as u8; 100 << 10];
            nodes.push(GraphNode::new(
                TaskSpec::new(kinds::ECHO, 0).with_bytes(payload),
                vec![],
            ));
            nodes.push(GraphNode::new("sleep:30ms".parse().unwrap(), vec![2 * c]));
        }
        let ends = sup
            .submit_graph(nodes)
            .unwrap()
            .wait_all(Some(WATCHDOG))
            .unwrap();
        for e in &ends {
            assert!(e.outcome.is_completed(), "{e:?}");
        }
        let mut pairs: Vec<(&NodeEnd, &NodeEnd)> = (0..chains)
            .map(|c| (&ends[2 * c], &ends[2 * c + 1]))
            .collect();
        pairs.sort_by_key(|(s, _)| s.timing.dispatched_ns);
        let timings: Vec<_> = pairs.iter().map(|(s, c)| (s.timing, c.timing)).collect();
        drop(ends);
        every_buffer_comes_back(&sup);
        sup.shutdown(Shutdown::Drain).unwrap();
        timings
    };
    let one = run(GraphFlow {
        sources: Some(1),
        edge_bytes: None,
    });
    let mut overlapped = false;
    for w in one.windows(2) {
        let ((s0, c0), (s1, _)) = (w[0], w[1]);
        assert!(s1.dispatched_ns >= s0.ended_ns, "{one:?}");
        overlapped |= s1.dispatched_ns < c0.ended_ns;
    }
    assert!(overlapped, "a source never ran beside a consumer: {one:?}");
    let bytes = run(GraphFlow {
        sources: Some(1),
        edge_bytes: Some(1),
    });
    for w in bytes.windows(2) {
        let ((_, c0), (s1, _)) = (w[0], w[1]);
        assert!(s1.dispatched_ns >= c0.ended_ns, "{bytes:?}");
    }
}

/// A detached graph's ends come through `recv`, and a node takes held outputs before its
/// dependencies' outputs.
#[test]
fn a_detached_graph_takes_held_inputs_first_and_ends_through_recv() {
    let _serial = SERIAL.lock();
    let sup = builder(2).build().unwrap();
    let head = sup.hold(b"head:").unwrap();
    let nodes = vec![
        GraphNode::new(
            TaskSpec::new(kinds::ECHO, 0).with_bytes(b"x".to_vec()),
            vec![],
        ),
        GraphNode::new(
            TaskSpec::new(kinds::CONCAT, 0).with_held(vec![head]),
            vec![0],
        ),
    ];
    let ids = sup.submit_graph_detached(nodes).unwrap();
    let mut outputs = std::collections::HashMap::new();
    for _ in 0..2 {
        let (id, outcome) = sup.recv(Some(WATCHDOG)).unwrap();
        match outcome {
            Outcome::Completed { output, .. } => outputs.insert(id, output),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(outputs[&ids[0]], b"");
    let mut want = b"head:".to_vec();
    want.extend(xor(b"x"));
    assert_eq!(outputs[&ids[1]], want);
    // Input bytes beside dependencies are refused, and nothing of the graph runs.
    let bad = vec![
        GraphNode::new(TaskSpec::new(kinds::NOOP, 0), vec![]),
        GraphNode::new(
            TaskSpec::new(kinds::ECHO, 0).with_bytes(b"y".to_vec()),
            vec![0],
        ),
    ];
    assert!(matches!(
        sup.submit_graph_detached(bad),
        Err(Error::BadGraph(_))
    ));
    every_buffer_comes_back(&sup);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// A cycle is refused at submit, naming it; so is a list out of topological order given
/// to the supervisor directly. Nothing of either runs, and the swarm goes on serving.
#[test]
fn a_cycle_is_refused_at_submit() {
    let _serial = SERIAL.lock();
    let sup = builder(1).build().unwrap();
    let mut g = Graph::new();
    let a = g.add(TaskSpec::new(kinds::NOOP, 0));
    let b = g.add_after(TaskSpec::new(kinds::NOOP, 0), &[a]);
    g.depend(a, b);
    match g.submit(&sup) {
        Err(GraphError::Cycle(c)) => assert_eq!(c.len(), 2),
        other => panic!("{other:?}"),
    }
    let forward = vec![
        GraphNode::new(TaskSpec::new(kinds::NOOP, 0), vec![1]),
        GraphNode::new(TaskSpec::new(kinds::NOOP, 0), vec![]),
    ];
    assert!(matches!(sup.submit_graph(forward), Err(Error::BadGraph(_))));
    let with_input = vec![
        GraphNode::new(TaskSpec::new(kinds::NOOP, 0), vec![]),
        GraphNode::new(TaskSpec::echo(3, 1), vec![0]),
    ];
    assert!(matches!(
        sup.submit_graph(with_input),
        Err(Error::BadGraph(_))
    ));
    assert_eq!(sup.status().counters.completed, 0);
    let o = sup
        .submit(TaskSpec::new(kinds::NOOP, 0))
        .unwrap()
        .wait(Some(WATCHDOG));
    assert!(o.unwrap().is_completed());
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// One agent busy with a long task, then low-priority tasks, then high-priority ones: the
/// high ones run first, in their order. With an aging step of zero, priorities give way
/// to submission order entirely (every task is as old as its submission).
#[test]
fn higher_priorities_run_first_and_aging_bounds_the_wait() {
    let _serial = SERIAL.lock();
    for (aging, high_first) in [(Duration::from_secs(60), true), (Duration::ZERO, false)] {
        let sup = builder(1)
            .queue_depth(1)
            .priority_aging(aging)
            .build()
            .unwrap();
        let blocker = sup.submit("sleep:100ms".parse().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut order = Vec::new();
        for (i, p) in [(0u64, 0), (1, 0), (2, 0), (3, 5), (4, 5), (5, 9)] {
            let spec = TaskSpec::new(kinds::NOOP, i).with_priority(p);
            order.push((sup.submit_detached(spec).unwrap(), i));
        }
        assert!(blocker.wait(Some(WATCHDOG)).unwrap().is_completed());
        let mut ran = Vec::new();
        for _ in 0..6 {
            let (id, o) = sup.recv(Some(WATCHDOG)).unwrap();
            assert!(o.is_completed());
            ran.push(order.iter().find(|(t, _)| *t == id).unwrap().1);
        }
        let want = if high_first {
            vec![5, 3, 4, 0, 1, 2]
        } else {
            vec![0, 1, 2, 3, 4, 5]
        };
        assert_eq!(ran, want, "aging {aging:?}");
        sup.shutdown(Shutdown::Drain).unwrap();
    }
}

/// A random DAG of 100,000 noop nodes, about three parents each, while a thread SIGKILLs
/// an agent every 150 ms: every node completes exactly once, and none was dispatched
/// before all its parents had completed.
#[test]
fn a_random_dag_under_sigkill_chaos_runs_every_node_once_after_its_parents() {
    let _serial = SERIAL.lock();
    const NODES: usize = 100_000;
    let sup = Arc::new(builder(2).build().unwrap());
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut g = Graph::new();
    let mut parents: Vec<Vec<usize>> = Vec::with_capacity(NODES);
    for i in 0..NODES {
        let mut ps: Vec<usize> = Vec::new();
        if i > 0 {
            for _ in 0..(next() % 6) {
                // Mostly recent nodes, so the graph is deep as well as wide.
                let back = 1 + (next() as usize % i.min(200));
                let p = i - back;
                if !ps.contains(&p) {
                    ps.push(p);
                }
            }
        }
        let deps: Vec<NodeId> = ps.iter().map(|&p| NodeId(p)).collect();
        g.add_after(TaskSpec::new(kinds::NOOP, i as u64), &deps);
        parents.push(ps);
    }
    let chaos = swarm::Chaos::start(sup.clone(), Duration::from_millis(150));
    let t = std::time::Instant::now();
    let mut run = g.submit(&sup).unwrap();
    let mut ends: Vec<Option<NodeEnd>> = (0..NODES).map(|_| None).collect();
    while let Some((n, end)) = run.join_next(Some(WATCHDOG)) {
        assert!(ends[n.0].is_none(), "{n} ended twice");
        ends[n.0] = Some(end);
    }
    let took = t.elapsed();
    drop(run);
    let kills = chaos.stop();
    let edges: usize = parents.iter().map(Vec::len).sum();
    eprintln!("{NODES} nodes, {edges} edges in {took:?} with {kills} agents killed");
    for (i, end) in ends.iter().enumerate() {
        let end = end
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} never ended"));
        assert!(end.outcome.is_completed(), "node {i}: {:?}", end.outcome);
        for &p in &parents[i] {
            let parent = ends[p].as_ref().unwrap();
            assert!(
                end.timing.dispatched_ns >= parent.timing.ended_ns,
                "node {i} dispatched before its parent {p} ended"
            );
        }
    }
    assert!(kills >= 1, "the chaos thread killed no agent");
    let c = sup.status().counters;
    assert_eq!(c.completed, NODES as u64, "{c:?}");
    every_buffer_comes_back(&sup);
    Arc::into_inner(sup)
        .unwrap()
        .shutdown(Shutdown::Drain)
        .unwrap();
}

/// Map-reduce as a tree (fan-in 4 over 100 inputs: four levels), a pipeline of three
/// stages over 100 inputs, each through real agents, outputs in order.
#[test]
fn map_reduce_and_pipeline_give_their_outputs_in_order() {
    let _serial = SERIAL.lock();
    let sup = builder(2).build().unwrap();
    let inputs: Vec<Vec<u8>> = (0..100u64)
        .map(|i| neuralflow_swarm::task::echo_pattern(10 + i as usize * 37, i))
        .collect();
    let mr = MapReduce {
        fan_in: 4,
        ..MapReduce::new(kinds::ECHO, kinds::CONCAT)
    };
    let (g, root) = mr.graph(inputs.clone());
    // 100 → 25 reduce nodes → 6 (and one passed up) → 2 → 1.
    assert_eq!(g.len(), 100 + 25 + 6 + 2 + 1, "a tree of reduce nodes");
    assert!(root.is_some());
    let got = mr.run(&sup, inputs.clone(), Some(WATCHDOG)).unwrap();
    let want: Vec<u8> = inputs.iter().flat_map(|i| xor(i)).collect();
    assert!(got == want, "map outputs reduced in input order");
    // One input: the reduce of one value is the value.
    assert_eq!(
        mr.run(&sup, vec![b"x".to_vec()], Some(WATCHDOG)).unwrap(),
        xor(b"x")
    );
    let p = Pipeline::new(vec![kinds::ECHO, kinds::ECHO, kinds::ECHO]);
    let outs = p.run(&sup, inputs.clone(), Some(WATCHDOG)).unwrap();
    assert_eq!(outs.len(), 100);
    for (o, i) in outs.iter().zip(&inputs) {
        assert_eq!(o.as_ref().unwrap(), &xor(i));
    }
    // A stage that fails is reported as the failure, not as its dependents'.
    let bad = Pipeline::new(vec![kinds::ECHO, kinds::PANIC, kinds::ECHO]);
    let outs = bad.run(&sup, vec![b"in".to_vec()], Some(WATCHDOG)).unwrap();
    assert!(matches!(
        &outs[0],
        Err(PatternError::Failed {
            failure: Failure::Panicked(_),
            ..
        })
    ));
    every_buffer_comes_back(&sup);
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// Scatter-gather puts its copies on different agents and waits for all, a quorum, or
/// its deadline (cancelling the rest); a vote accepts the output a threshold agree on.
#[test]
fn scatter_gather_and_vote_spread_over_agents() {
    let _serial = SERIAL.lock();
    let sup = builder(3).build().unwrap();
    let sg = ScatterGather::new(kinds::ECHO, 3);
    let got = sg.run(&sup, b"same input").unwrap();
    assert_eq!(got.outputs.len(), 3);
    let mut slots: Vec<u32> = got.outputs.iter().map(|c| c.slot).collect();
    slots.sort_unstable();
    assert_eq!(slots, [0, 1, 2], "one copy on each agent");
    assert!(got.outputs.iter().all(|c| c.output == xor(b"same input")));
    // A deadline: sleepers that would take ten seconds are cancelled at 200 ms.
    let t = std::time::Instant::now();
    let slow = ScatterGather {
        arg: 10_000_000_000,
        deadline: Some(Duration::from_millis(200)),
        ..ScatterGather::new(kinds::SLEEP, 2)
    };
    let got = slow.run(&sup, b"").unwrap();
    assert!(
        got.outputs.is_empty() && got.cancelled.len() == 2,
        "{got:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // A quorum of 1 of 3 returns at the first output.
    let quick = ScatterGather {
        quorum: Some(1),
        ..ScatterGather::new(kinds::ECHO, 3)
    };
    assert!(!quick.run(&sup, b"q").unwrap().outputs.is_empty());
    // With one agent being replaced, the copies still spread and all end: the one left
    // waits for the new agent rather than holding up the others.
    let pid = sup.status().agents[2].pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let got = ScatterGather::new(kinds::ECHO, 3)
        .run(&sup, b"again")
        .unwrap();
    assert_eq!(got.outputs.len(), 3, "{got:?}");
    let v = Vote::new(kinds::ECHO, 3, 2).run(&sup, b"ballot").unwrap();
    // A graph node whose input the page buffers could never lend is refused at submit
    // (it would wait for ever, and everything behind it).
    let huge = vec![GraphNode::new(TaskSpec::echo(64 << 20, 1), Vec::new())];
    assert!(matches!(sup.submit_graph(huge), Err(Error::BadGraph(_))));
    assert_eq!(v.output, xor(b"ballot"));
    assert_eq!(v.agreed.len(), 3);
    assert!(v.dissent.is_empty() && v.missing.is_empty());
    let no = Vote::new(kinds::PANIC, 3, 2).run(&sup, b"ballot");
    assert!(matches!(no, Err(PatternError::NoQuorum(_))), "{no:?}");
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// Tasks completed by each slot, over `n` tasks of `task` (submitted at once, once every
/// agent is ready).
fn per_slot(sup: &Supervisor, n: usize, task: &str) -> Vec<usize> {
    let deadline = std::time::Instant::now() + WATCHDOG;
    while sup.status().agents.iter().any(|a| a.phase != "ready") {
        assert!(std::time::Instant::now() < deadline, "agents never ready");
        std::thread::sleep(Duration::from_millis(2));
    }
    let handles: Vec<_> = (0..n)
        .map(|_| sup.submit(task.parse().unwrap()).unwrap())
        .collect();
    let mut counts = vec![0; sup.status().agents.len()];
    for h in handles {
        match h.wait(Some(WATCHDOG)).unwrap() {
            Outcome::Completed { slot, .. } => counts[slot as usize] += 1,
            other => panic!("{other:?}"),
        }
    }
    counts
}

/// Round-robin gives each agent with room its turn; adaptive learns that an agent held to a
/// quarter of a core is slow and gives it fewer tasks; every agent lists the kinds it
/// serves.
#[test]
fn strategies_pick_agents_as_they_say() {
    let _serial = SERIAL.lock();
    // Queues deep enough that none fills: each agent has its turn, whatever its speed.
    let sup = builder(3)
        .scheduling(Scheduling::RoundRobin)
        .queue_depth(128)
        .build()
        .unwrap();
    let counts = per_slot(&sup, 300, "spin:200us");
    assert_eq!(counts, [100, 100, 100]);
    let served = &sup.status().agents[0].serves;
    assert!(served.contains(&kinds::NOOP) && served.contains(&kinds::ECHO));
    sup.shutdown(Shutdown::Drain).unwrap();

    let sup = builder(0)
        .agent_classes(vec![
            AgentClass::new("slow", 1, None).with_limits(Limits {
                cpu_cores: Some(0.25),
                ..Limits::default()
            }),
            AgentClass::new("fast", 1, Some(vec![kinds::BUSY, kinds::NOOP])),
        ])
        .scheduling(Scheduling::Adaptive)
        .build()
        .unwrap();
    let serves = &sup.status().agents[1].serves;
    assert_eq!(
        serves,
        &[kinds::NOOP, kinds::BUSY],
        "the fast class's kinds, in registry order"
    );
    if sup.status().isolation.cgroups.is_none() {
        eprintln!("no cgroups here: the CPU quota that makes one agent slow is not applied");
        sup.shutdown(Shutdown::Drain).unwrap();
        return;
    }
    let counts = per_slot(&sup, 200, "busy:2ms");
    assert!(
        counts[1] > 2 * counts[0],
        "the fast agent takes most: {counts:?}"
    );
    sup.shutdown(Shutdown::Drain).unwrap();
}

/// Agents running (ready or starting) and parked.
fn pool(sup: &Supervisor) -> (usize, usize) {
    let agents = sup.status().agents;
    let running = agents
        .iter()
        .filter(|a| matches!(a.phase, "ready" | "starting" | "dead" | "backoff"))
        .count();
    let parked = agents.iter().filter(|a| a.phase == "parked").count();
    (running, parked)
}

/// An elastic pool of 1..4 grows while a burst waits, with an agent SIGKILLed every
/// 150 ms meanwhile, shrinks back to one once idle, and loses or doubles no task.
#[test]
fn an_elastic_pool_grows_under_a_burst_and_shrinks_when_idle() {
    let _serial = SERIAL.lock();
    let sup = Arc::new(
        builder(0)
            .elastic(1, 4)
            .retire_after(Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + WATCHDOG;
    while pool(&sup) != (1, 3) || sup.status().agents[0].phase != "ready" {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            sup.status().agents
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let chaos = swarm::Chaos::start(sup.clone(), Duration::from_millis(150));
    let ids: Vec<_> = (0..600)
        .map(|i| {
            let spec = TaskSpec::new(kinds::SPIN, 2_000_000 + i);
            sup.submit_detached(spec).unwrap()
        })
        .collect();
    let mut most = 0;
    let mut done = std::collections::HashMap::new();
    while done.len() < ids.len() {
        let (id, o) = sup.recv(Some(WATCHDOG)).unwrap();
        assert!(o.is_completed(), "{o:?}");
        assert!(done.insert(id, ()).is_none(), "task {id} ended twice");
        most = most.max(pool(&sup).0);
    }
    chaos.stop();
    assert!(most >= 3, "the pool grew to {most} only");
    // Idle: back to one agent, the others parked.
    while pool(&sup) != (1, 3) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            sup.status().agents
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = sup.status().counters;
    eprintln!(
        "grew to {most}; added {}, retired {}, restarts {}, deaths {:?}; {:?}",
        c.agents_added,
        c.agents_retired,
        c.agent_restarts,
        c.deaths,
        sup.status()
            .agents
            .iter()
            .map(|a| (a.slot, a.epoch, a.restarts))
            .collect::<Vec<_>>()
    );
    assert!(c.agents_added >= 2 && c.agents_retired >= 2, "{c:?}");
    // Every death was answered by a restart; growing is not restarting.
    assert_eq!(c.agent_restarts, c.deaths.values().sum::<u64>(), "{c:?}");
    assert_eq!(c.completed, 600, "{c:?}");
    // Retiring is not dying: the only deaths are the chaos thread's kills.
    assert!(c.deaths.keys().all(|k| *k == "signal"), "{c:?}");
    Arc::into_inner(sup)
        .unwrap()
        .shutdown(Shutdown::Drain)
        .unwrap();
}

/// Copies spread over the agents that can take them: with two generalists and a
/// specialist of another kind, a third copy goes to a generalist again instead of waiting
/// for an agent that will never take it.
#[test]
fn spread_copies_count_only_agents_that_can_take_them() {
    let _serial = SERIAL.lock();
    let sup = builder(0)
        .agent_classes(vec![
            AgentClass::new("any", 2, None),
            AgentClass::new("sleeper", 1, Some(vec![kinds::SLEEP])),
        ])
        .build()
        .unwrap();
    let sg = ScatterGather {
        deadline: Some(WATCHDOG),
        ..ScatterGather::new(kinds::ECHO, 3)
    };
    let got = sg.run(&sup, b"x").unwrap();
    assert_eq!(got.outputs.len(), 3, "{got:?}");
    assert!(got.outputs.iter().all(|c| c.slot < 2));
    // And the queue behind them moved on.
    assert!(wait_one(&sup));
    sup.shutdown(Shutdown::Drain).unwrap();
}

fn wait_one(sup: &Supervisor) -> bool {
    sup.submit(TaskSpec::new(kinds::NOOP, 0))
        .unwrap()
        .wait(Some(WATCHDOG))
        .is_some_and(|o| o.is_completed())
}
