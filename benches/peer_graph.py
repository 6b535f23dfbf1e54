#!/usr/bin/env python3
"""The peer of `swarm bench graph`: the same three graph shapes of no-op tasks on Dask
(distributed, a local cluster of worker processes, one thread each) or on Ray (a local
instance with as many CPUs), timed the same way: from handing the graph over to the last
node's end.

    pip install "dask[distributed]" ray
    python3 benches/peer_graph.py --peer dask --nodes 10000 --workers 2 --json
    python3 benches/peer_graph.py --peer ray --nodes 2000 --workers 2 --json

The random shape is the one `swarm bench graph` builds (the same xorshift, the same
parents), so the two run the same graph. A chain's link here is its mean (wall / nodes):
neither peer reports when each task ran in the same clock.
"""

import argparse
import json
import time


def parents(shape, nodes):
    if shape == "chain":
        return [[] if i == 0 else [i - 1] for i in range(nodes)]
    if shape == "fan":
        return [[] for _ in range(nodes)] + [list(range(nodes))]
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1

    def nxt():
        nonlocal x
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        return x

    out = []
    for i in range(nodes):
        ps = []
        while len(ps) < min(i, 3):
            p = i - 1 - (nxt() % min(i, 1000))
            if p not in ps:
                ps.append(p)
        out.append(ps)
    return out


def noop(*_):
    return None


def run_ray(ray, shape, nodes):
    ps = parents(shape, nodes)

    @ray.remote
    def rnoop(*_):
        return None

    start = time.perf_counter()
    refs = []
    for deps in ps:
        refs.append(rnoop.remote(*[refs[p] for p in deps]))
    ray.get(refs)
    wall = time.perf_counter() - start
    return report_of(shape, ps, wall)


def report_of(shape, ps, wall):
    n = len(ps)
    report = {
        "nodes": n,
        "edges": sum(len(d) for d in ps),
        "wall_seconds": wall,
        "nodes_per_second": n / wall,
    }
    if shape == "chain":
        report["link_us_mean"] = wall / n * 1e6
    return report


def run(client, shape, nodes):
    ps = parents(shape, nodes)
    dsk = {("n", i): (noop, *[("n", p) for p in deps]) for i, deps in enumerate(ps)}
    keys = list(dsk)
    start = time.perf_counter()
    client.get(dsk, keys, sync=True)
    return report_of(shape, ps, time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--peer", choices=("dask", "ray"), default="dask")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    order = ("random", "chain", "fan")
    if a.peer == "ray":
        import ray

        ray.init(num_cpus=a.workers, include_dashboard=False, log_to_driver=False)

        @ray.remote
        def warm():
            return None

        ray.get([warm.remote() for _ in range(a.workers * 4)])
        shapes = {s: run_ray(ray, s, a.nodes) for s in order}
        ray.shutdown()
    else:
        from dask.distributed import Client, LocalCluster

        with LocalCluster(
            n_workers=a.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster, Client(cluster) as client:
            client.get({"warm": (noop,)}, "warm", sync=True)
            shapes = {s: run(client, s, a.nodes) for s in order}
    for name, r in shapes.items():
        line = (
            f"{name:>7}: {r['nodes']} nodes, {r['edges']} edges in {r['wall_seconds']:.3f} s:"
            f" {r['nodes_per_second']:.0f} nodes/s"
        )
        if "link_us_mean" in r:
            line += f"; a link {r['link_us_mean']:.0f} us (mean)"
        print(line)
    if a.json:
        print(json.dumps({"peer": a.peer, "workers": a.workers, "shapes": shapes}))


if __name__ == "__main__":
    main()
