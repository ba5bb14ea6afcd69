"""`make chaos`: SIGKILL `kale run` at random moments, then let it finish, and compare.

    python -m tests.reliability.chaos --seed 7 --rounds 2 --kills 3

One uninterrupted `kale run` on the generated sample is the reference. Each round
starts a fresh lake and runs `kale run` `--kills` times, each SIGKILLed (the whole
process group) at a random moment: a stage drawn from the seeded generator (distinct
stages within a round) and a delay after that stage starts, drawn from [0,
MAX_DELAY_S); a stage that ends sooner puts the kill in a later one. Then `kale run`
once more to the end. After each round: no table may hold a key
twice, and the gold table must equal the reference's (uids and every column but run
ids). Prints each run (the stage it was in when killed), the kills and the
mismatches; exits 1 on any mismatch or duplicate, 2 when a clean run fails.
`CHAOS_SEED` / `CHAOS_ROUNDS` set the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

from tests.support import kills, stage2_pipeline

CHUNKS = [
    "caption.rows_per_commit=2",
    "augment.rows_per_commit=2",
    "student.caption.rows_per_commit=2",
]
STAGE_LINE = re.compile(r"\[([a-z-]+)\] run \S+ started")
STAGES = (
    "ingest",
    "fetch",
    "caption",
    "augment",
    "filter",
    "train-student",
    "student-caption",
    "publish",
)
MAX_DELAY_S = 10.0


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "0") or 0))
    p.add_argument("--rounds", type=int, default=int(os.environ.get("CHAOS_ROUNDS", "1") or 1))
    p.add_argument("--kills", type=int, default=3, help="SIGKILLs per round before the finish")
    p.add_argument(
        "--workdir",
        help="keep the lakes here (default: a temporary folder); a reference run already "
        "there is reused",
    )
    return p.parse_args(argv)


def _kale_run(root: Path) -> list[str]:
    overrides = [*stage2_pipeline.overrides(root), *CHUNKS]
    return kills.kale_cmd(["run", "--input", str(root / "sample" / "metadata")], overrides)


def _stage_at_kill(log: str) -> str:
    started = STAGE_LINE.findall(log)
    return started[-1] if started else "startup"


def _in_stage(stage: str, delay: float):
    """A kill point `delay` seconds after `stage` first logs its start."""
    import time

    seen: list[float] = []
    started = re.compile(rf"\[{re.escape(stage)}\] run \S+ started")

    def point(log: str) -> bool:
        if not seen and started.search(log):
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() >= seen[0] + delay

    return point


def _round(n: int, work: Path, rng: random.Random, n_kills: int, ref) -> dict:
    root = work / f"round-{n}"
    shutil.rmtree(root, ignore_errors=True)
    stage2_pipeline.write_sample(root)
    shutil.copytree(work / "reference" / "model-cache", root / "model-cache", dirs_exist_ok=True)
    landed = []
    # Distinct stages in pipeline order: each kill lands where the work is not done yet.
    targets = sorted(rng.sample(STAGES, min(n_kills, len(STAGES))), key=STAGES.index)
    targets += [rng.choice(STAGES) for _ in range(n_kills - len(targets))]
    for k, target in enumerate(targets):
        delay = rng.uniform(0, MAX_DELAY_S)
        point = _in_stage(target, delay)
        out = kills.run_and_kill(_kale_run(root), root / f"kill-{k}.log", point)
        what = _stage_at_kill(out.log) if out.killed else f"finished rc={out.returncode}"
        landed.append({"target": target, "after_s": round(delay, 1), "stage": what})
        landed[-1]["killed"] = out.killed
        print(
            f"round {n} run {k + 1}: aimed at {target} +{delay:.1f}s, killed in {what}", flush=True
        )
    final = kills.run_and_kill(_kale_run(root), root / "final.log", None)
    print(f"round {n} run {n_kills + 1}: finished rc={final.returncode}", flush=True)
    dupes = kills.duplicate_keys(root / "lake") if final.returncode == 0 else {}
    got = kills.gold(root / "lake", root=root) if final.returncode == 0 else {}
    mismatches = kills.gold_mismatches(got, ref) if final.returncode == 0 else []
    weights = kills.student_weights(root / "lake") == kills.student_weights(
        work / "reference" / "lake"
    )
    if final.returncode == 0 and not weights:
        mismatches.append("the student's final weights differ from the reference's")
    return {
        "round": n,
        "kills": landed,
        "final_rc": final.returncode,
        "duplicates": dupes,
        "mismatches": mismatches,
    }


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kale-chaos-"))
    ref_root = work / "reference"
    if (ref_root / "lake" / "releases").is_dir():  # a --workdir that has one: reused
        print(f"reference: reused {ref_root} (seed {args.seed})", flush=True)
    else:
        stage2_pipeline.write_sample(ref_root)
        ref = kills.run_and_kill(_kale_run(ref_root), ref_root / "run.log", None)
        if ref.returncode != 0:
            print(f"the reference run failed (rc {ref.returncode}); see {ref_root}/run.log")
            return 2
        print(f"reference: kale run in {ref.seconds:.0f}s (seed {args.seed})", flush=True)
    want = kills.gold(ref_root / "lake", root=ref_root)
    results = [_round(n, work, rng, args.kills, want) for n in range(1, args.rounds + 1)]
    failed = any(r["duplicates"] or r["mismatches"] for r in results)
    broken = any(r["final_rc"] != 0 for r in results)
    n_kills = sum(k["killed"] for r in results for k in r["kills"])
    n_runs = sum(len(r["kills"]) + 1 for r in results) + 1
    for r in results:
        for line in r["mismatches"][:20]:
            print(f"round {r['round']} mismatch: {line}")
        for table, extra in r["duplicates"].items():
            print(f"round {r['round']} duplicate keys: {table} +{extra}")
    summary = {
        "seed": args.seed,
        "runs": n_runs,
        "kills": n_kills,
        "stages_killed": sorted({k["stage"] for r in results for k in r["kills"] if k["killed"]}),
        "mismatches": sum(len(r["mismatches"]) for r in results),
        "duplicates": sum(sum(r["duplicates"].values()) for r in results),
        "workdir": str(work),
    }
    print("CHAOS " + json.dumps(summary))
    return 2 if broken else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
