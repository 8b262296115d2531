"""Does the model learn? The default run on several seeds beside its 3-D-supervised ceiling.

Trains the default configuration (``python -m occflow_train``: the ``synthetic`` preset on the
built-in world) once per seed with the self-supervised losses and once per seed with
``--supervision occupancy`` (the same model and schedule trained from the world's ground-truth
occupancy and flow: the ceiling), then prints one table: RayIoU (mean and @1/2/4 m), mAVE and
foreground EPE of every run beside the flat-ground and zero-flow baselines, the image dependence
(the share of above-ground occupied cells that change when every camera image is blanked), the
self-supervised / ceiling ratio and the wall time of each run.

Runs go to ``--out/<kind>-seed<N>``; a run whose ``metrics.json`` exists is read, not retrained,
and an interrupted one is resumed from its last checkpoint (``--resume``), so the benchmark can be
stopped and restarted. ``--jobs 2`` runs two trainings side by side with one thread each (wall
times are then those of one thread, not of two cores).

    uv run python packages/occflow-train/benchmarks/learning.py --out runs/learning
    uv run python packages/occflow-train/benchmarks/learning.py --seeds 0 1 2 --jobs 2 -- --stage1.steps 100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

KINDS = {"self": [], "ceiling": ["--supervision", "occupancy"]}


def _run(kind: str, seed: int, out: Path, extra: list[str], threads: int | None) -> dict:
    folder = out / f"{kind}-seed{seed}"
    metrics = folder / "metrics.json"
    timing = folder / "benchmark-wall.json"
    if metrics.is_file() and timing.is_file():
        return _row(kind, seed, folder)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "occflow_train", "--seed", str(seed), "--output-dir", str(folder),
           "--no-progress", "--eval.pictures", "0", *KINDS[kind], *extra]
    if (folder / "checkpoints").is_dir():
        cmd.append("--resume")
    folder.mkdir(parents=True, exist_ok=True)
    before = json.loads(timing.read_text())["wall_s"] if timing.is_file() else 0.0
    t0 = time.perf_counter()
    with open(folder / "benchmark.log", "a") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} seed {seed} failed (exit {proc.returncode}): see "
                         f"{folder / 'benchmark.log'}")
    # a resumed run adds to the time of its interrupted part only when that was recorded
    timing.write_text(json.dumps({"wall_s": before + time.perf_counter() - t0, "threads": threads}))
    return _row(kind, seed, folder)


def _row(kind: str, seed: int, folder: Path) -> dict:
    m = json.loads((folder / "metrics.json").read_text())
    wall = json.loads((folder / "benchmark-wall.json").read_text())
    model, flat, zero = m["model"], m["flat_ground_baseline"], m["zero_flow_baseline"]
    return {"kind": kind, "seed": seed, "rayiou": model["rayiou"], "at1": model["rayiou@1"],
            "at2": model["rayiou@2"], "at4": model["rayiou@4"], "mave": model["mave"],
            "fg_epe": model["fg_epe"],
            "flat": flat["rayiou"], "zero_mave": zero["mave"], "zero_fg_epe": zero["fg_epe"],
            "changed": m.get("image_dependence", {}).get("changed_fraction", math.nan),
            "wall_s": wall["wall_s"]}


def _f(x: float, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def table(rows: list[dict]) -> str:
    """The benchmark's table (one line per run, then the means and the targets' verdicts)."""
    ceiling = {r["seed"]: r["rayiou"] for r in rows if r["kind"] == "ceiling"}
    head = (f"{'run':14s} {'RayIoU':>7s} {'@1':>6s} {'@2':>6s} {'@4':>6s} {'flat':>6s} {'mAVE':>6s} "
            f"{'zero':>6s} {'fgEPE':>6s} {'zero':>6s} {'imgdep':>6s} {'/ceil':>6s} {'wall':>7s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = r["rayiou"] / ceiling[r["seed"]] if r["kind"] == "self" and r["seed"] in ceiling else math.nan
        lines.append(f"{r['kind'] + ' s' + str(r['seed']):14s} {_f(r['rayiou']):>7s} {_f(r['at1']):>6s} "
                     f"{_f(r['at2']):>6s} {_f(r['at4']):>6s} {_f(r['flat']):>6s} {_f(r['mave']):>6s} "
                     f"{_f(r['zero_mave']):>6s} {_f(r['fg_epe']):>6s} {_f(r['zero_fg_epe']):>6s} "
                     f"{_f(r['changed'], 2):>6s} {_f(ratio, 2):>6s} {r['wall_s'] / 60:6.1f}m")
    lines.append("-" * len(head))
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if mine:
            mean = sum(r["rayiou"] for r in mine) / len(mine)
            lines.append(f"mean {kind:9s} {_f(mean):>7s}   over seeds {[r['seed'] for r in mine]}")
    own = [r for r in rows if r["kind"] == "self"]
    if own:
        flat = own[0]["flat"]
        mean = sum(r["rayiou"] for r in own) / len(own)
        checks = [
            ("every seed above flat ground", all(r["rayiou"] > r["flat"] for r in own)),
            (f"mean >= flat + 0.05 ({flat + 0.05:.3f})", mean >= flat + 0.05),
            ("mAVE below zero flow on every seed", all(r["mave"] < r["zero_mave"] for r in own)),
            ("foreground EPE below zero flow on every seed",
             all(r["fg_epe"] < r["zero_fg_epe"] for r in own)),
        ]
        if ceiling:
            checks.append(("ceiling >= 0.50 on every seed",
                           all(v >= 0.5 for v in ceiling.values())))
            checks.append((">= 80 % of the ceiling on every seed",
                           all(r["seed"] in ceiling and r["rayiou"] >= 0.8 * ceiling[r["seed"]]
                               for r in own)))
        lines += [f"{'met' if ok else 'NOT met':8s} {what}" for what, ok in checks]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="arguments after -- go to every training run")
    p.add_argument("--out", type=Path, default=Path("runs/learning"), help="folder of the runs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=list(KINDS))
    p.add_argument("--jobs", type=int, default=1, help="trainings side by side (> 1: one thread each)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    if not args.seeds:
        raise SystemExit("--seeds needs at least one seed")
    threads = 1 if args.jobs > 1 else None
    todo = [(kind, seed) for seed in args.seeds for kind in args.kinds]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda ks: _run(ks[0], ks[1], args.out, extra, threads), todo))
    rows.sort(key=lambda r: (list(KINDS).index(r["kind"]), r["seed"]))
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    cpu = platform.processor() or platform.machine()
    how = f"1 thread per run, {args.jobs} runs side by side" if threads else "one run at a time"
    print(f"Learning benchmark, {when}, {os.cpu_count()} CPU cores ({cpu}), {how}"
          + (f"; extra arguments: {' '.join(extra)}" if extra else ""))
    print("RayIoU geo on the validation keyframes; flat = flat-ground baseline; zero = zero-flow "
          "baseline; imgdep = share of above-ground occupied cells that change with the images blanked")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
