"""The long fuzz run (issue 11 item 3): random sequences of valid and hostile writes to every
writable file of the model, with the properties of :mod:`cxlsys.fuzz` checked after every
operation; prints operations/s while it runs and a summary at the end.

    .venv/bin/python -m tools.fuzz --ops 1000000 [--topology cxl_test] [--seed N] [--jobs N] [--mount]

In-process (the default): episodes of ``--episode`` operations, each on a freshly booted model
with a fake clock, so an episode is a function of ``(topology, seed, episode index)`` (``--jobs``
worker processes run episodes side by side; the result is the same).  A refusal is compared
against the deep snapshot (the whole tree, every readable value, /proc) before every
``--deep-every``-th operation and against the local snapshot (the written file's directory and
its parent) otherwise; ``check_invariants`` runs every ``--invariants-every`` operations.  An
operation that reproduces a kernel hazard (:mod:`cxlsys.hazards`) is counted apart and ends its
episode.

``--mount``: the same generator through a real mount — ``cxlsys run`` serves the topology and,
inside it, every operation is an ``os.write`` on ``/sys`` and is applied to an in-process mirror
(whose checks run as above); the errnos must agree, the daemon must survive, and its kernel log
(``dmesg`` inside the run) must have no internal error.

Each distinct failure is printed once with its shortest reproducer (the operations of its episode
from boot; ``--shrink`` cuts it down further) and all are written to ``--failures`` (JSON) for
``--replay FILE``.  Exit status: 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cxlsys import fuzz
from cxlsys.cli.output import progress
from cxlsys.fuzz import FuzzStats, Op

ROOT = Path(__file__).resolve().parent.parent


def _progress(stats: FuzzStats) -> None:
    rate = stats.ops / stats.seconds if stats.seconds else 0.0
    print(f"[{stats.seconds:7.0f} s] {stats.ops} ops, {rate:.0f} ops/s, failures: internal {stats.internal}, "
          f"changed on refusal {stats.changed}, invariant breaks {stats.invariant_breaks}",
          file=sys.stderr, flush=True)


def _show_failures(stats: FuzzStats, args) -> None:
    if not stats.failures:
        return
    print(f"\ndistinct failures: {len(stats.failures)}")
    out = []
    for key, f in sorted(stats.failures.items(), key=lambda kv: -stats.failure_counts[kv[0]]):
        ops = f.ops
        if args.shrink:
            ops = fuzz.shrink(f.topology, ops, budget_s=args.shrink, kind=f.kind)
        print(f"\n- {f.kind} x{stats.failure_counts[key]} (episode {f.seed}): {f.detail[0][:300]}")
        for line in f.detail[1:4]:
            print(f"    {line[:300]}")
        print(f"  reproducer ({len(ops)} ops from boot of {f.topology}){'' if len(ops) <= 40 else ', last 40'}:")
        for op in ops[-40:]:
            print(f"    {op.show()}")
        d = f.to_json()
        d["ops"] = [o.to_json() for o in ops]
        d["count"] = stats.failure_counts[key]
        out.append(d)
    Path(args.failures).write_text(json.dumps(out, indent=1))
    print(f"\nfailures written to {args.failures} (replay: python -m tools.fuzz --replay {args.failures})")


def run_in_process(args) -> int:
    print(f"fuzz: {args.ops} operations on {args.topology}, seed {args.seed}, episodes of {args.episode}"
          f"{f' in {args.jobs} processes' if args.jobs > 1 else ''}, "
          f"deep snapshot every {args.deep_every}, invariants every {args.invariants_every}", flush=True)
    with progress(f"fuzz {args.topology}", args.ops) as bar:
        # on a terminal a bar (moved every second); in a log a line every --progress seconds
        def report(stats: FuzzStats) -> None:
            if bar is None:
                _progress(stats)
            else:
                bar(done=stats.ops, description=f"fuzz {args.topology}: {stats.ops / max(stats.seconds, 1e-9):.0f} "
                                               f"ops/s, failures {len(stats.failures)}")
        stats = fuzz.fuzz(args.ops, topology=args.topology, seed=args.seed, episode_ops=args.episode,
                          deep_every=args.deep_every, invariants_every=args.invariants_every, jobs=args.jobs,
                          progress=report, progress_every=args.progress if bar is None else 1.0)
    print("\n".join(stats.summary(invariants_every=args.invariants_every, deep_every=args.deep_every)))
    _show_failures(stats, args)
    return 1 if stats.failures else 0


def run_inside_mount(args) -> int:
    """The part that runs inside ``cxlsys run``: one JSON document on stdout."""
    res = fuzz.mount_inner(args.ops, topology=args.topology, seed=args.seed, deep_every=args.deep_every,
                           invariants_every=args.invariants_every)
    print(json.dumps(res))
    return 0


def run_mount(args) -> int:
    print(f"fuzz through the mount: {args.ops} operations on {args.topology}, seed {args.seed}", flush=True)
    inner = [sys.executable, "-m", "tools.fuzz", "--inside-mount", "--ops", str(args.ops), "--topology",
             args.topology, "--seed", str(args.seed), "--deep-every", str(args.deep_every),
             "--invariants-every", str(args.invariants_every)]
    script = (" ".join(inner) + " > \"$CXLSYS_FUZZ_OUT\"\n"
              "echo \"WARNS=$(dmesg | grep -c 'WARNING: cxlsys internal error' || true)\"\n")
    fd, name = tempfile.mkstemp(prefix="cxlsys-fuzz-mount.", suffix=".json")
    os.close(fd)
    out = Path(name)
    env = dict(os.environ, CXLSYS_FUZZ_OUT=str(out), PYTHONPATH=str(ROOT))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "cxlsys", "run", "--topology", args.topology, "--",
                        "bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    secs = time.monotonic() - t0
    try:
        res = json.loads(out.read_text())
    except (OSError, ValueError):
        print(f"the run produced no result (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
        return 1
    finally:
        out.unlink(missing_ok=True)
    warns = next((int(x.split("=", 1)[1]) for x in r.stdout.splitlines() if x.startswith("WARNS=")), -1)
    dead = res["dead"] or not res["alive"] or r.returncode != 0
    m = res["mirror"]
    print(f"operations: {res['ops']} in {res['seconds']:.1f} s ({res['ops'] / max(res['seconds'], 1e-9):.0f} ops/s; "
          f"{secs:.1f} s with the mount's setup)")
    print(f"accepted: {res['accepted']}")
    print(f"refused: {sum(res['refused'].values())} ("
          + ", ".join(f"{k} {v}" for k, v in sorted(res['refused'].items(), key=lambda kv: -kv[1])) + ")")
    print(f"errno differences mount vs model: {res['divergent']}")
    for d in res["divergences"][:10]:
        print(f"    {d}")
    print(f"internal errors: {warns} in the daemon's kernel log, {m['internal']} in the mirror")
    print(f"daemon deaths: {int(dead)}")
    print("mirror: " + "\n        ".join(m["summary"][3:6]))
    for f in m["failures"]:
        print(f"    {f['kind']}: {f['detail'][0][:300]} (after {len(f['ops'])} ops)")
    return 0 if not dead and warns == 0 and res["divergent"] == 0 and not m["failures"] else 1


def replay(args) -> int:
    fails = json.loads(Path(args.replay).read_text())
    bad = 0
    for f in fails:
        ops = [Op.from_json(o) for o in f["ops"]]
        outs = fuzz.replay(f["topology"], ops)
        last = outs[-1]
        print(f"{f['kind']}: {len(ops)} ops; last: {last.op.show()} -> "
              f"{'accepted' if last.accepted else os.strerror(last.errno or 0)}")
        for p in last.problems() or ["(no longer fails)"]:
            print(f"    {p[:400]}")
        bad += bool(last.failed)
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=100_000, help="operations in all (default 100000)")
    ap.add_argument("--topology", default="cxl_test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mount", action="store_true", help="through a real mount (cxlsys run; needs root, fuse)")
    ap.add_argument("--episode", type=int, default=2000, help="operations per boot (default 2000)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes running episodes (default 1)")
    ap.add_argument("--deep-every", type=int, default=100,
                    help="deep snapshot before every k-th operation (default 100; 1: every one)")
    ap.add_argument("--invariants-every", type=int, default=1, help="check_invariants every k ops (default 1)")
    ap.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines (stderr)")
    ap.add_argument("--failures", default="fuzz-failures.json", help="where failures are written (JSON)")
    ap.add_argument("--shrink", type=float, default=0.0, metavar="SECONDS",
                    help="shrink each reproducer for up to this many seconds")
    ap.add_argument("--replay", metavar="FILE", help="replay the failures of a previous run")
    ap.add_argument("--inside-mount", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.replay:
        return replay(args)
    if args.inside_mount:
        return run_inside_mount(args)
    if args.mount:
        return run_mount(args)
    return run_in_process(args)


if __name__ == "__main__":
    sys.exit(main())
