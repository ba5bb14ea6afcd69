"""What each start-up tuning gains in a whole command, measured on and off.

    python bench/startup.py [--repeats 3] [--rows 120] [--workdir /tmp/kale-startup]

Two tunings, each timed in the whole command it serves (a fresh process from start to
exit, JVM start included), with the tuning on and off, the order alternated between
repeats, every run on a fresh copy of the same input lake:

- ``spark.jvm_quick_start`` (C1-only JIT, the serial collector on small machines, the
  class archive ``make setup`` builds): ``kale ingest`` of the generated sample into an
  empty lake, the command whose time is most nearly all start-up.
- ``spark.warm_workers`` (Python workers, and a model stage's model, started while the
  driver plans): ``kale fetch`` of that sample (local files) on an ingested lake, and
  ``kale caption`` (the tiny VLM) on a fetched lake.

Each gain is off-time / on-time per repeat (> 1: the tuning pays), median with min and
max. Figures go to ``bench/figures/startup-cpu.json`` with machine, cores, date, commit,
command and the load average before each run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FIGURES_DIR, load_average, run_timed, spread, stamp  # noqa: E402

# The `kale` command as a user runs it: the console script beside this interpreter.
KALE = [str(Path(sys.executable).with_name("kale"))]
TUNINGS = {
    "jvm_quick_start": ("spark.jvm_quick_start", ["ingest"]),
    "warm_workers": ("spark.warm_workers", ["fetch", "caption"]),
}
# What each command needs done beforehand (untimed, in its own process).
BEFORE = {"ingest": [], "fetch": ["ingest"], "caption": ["ingest", "fetch"]}


def _settings(work: Path, lake: Path) -> list[str]:
    return [
        "--set",
        f"lake.root={lake}",
        "--set",
        f"fetch.file_root={work / 'sample'}",
        "--set",
        "spark.master=local[2]",
        "--set",
        "fetch.image.resolution=64",
        "--set",
        "caption.commit_interval_s=600",
    ]


def _kale(command: str, work: Path, lake: Path, extra: list[str]) -> list[str]:
    args = [command, *_settings(work, lake), *extra]
    if command == "ingest":
        args += ["--input", str(work / "sample" / "metadata")]
    return [*KALE, *args]


def prepare(work: Path, rows: int) -> dict[str, Path]:
    """The sample, and one input lake per command (the stages before it, untimed)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    sample = ["sample", "--rows", str(rows), "--out", str(work / "sample"), "--seed", "3"]
    run_timed([*KALE, *sample, "--bad-fraction", "0"], 900)
    lakes = {}
    for command, before in BEFORE.items():
        lake = work / f"input-{command}"
        lake.mkdir()
        for step in before:
            run_timed(_kale(step, work, lake, []), 1800)
        lakes[command] = lake
    return lakes


def one_run(command: str, key: str, on: bool, work: Path, source: Path) -> dict:
    lake = work / "run-lake"
    if lake.exists():
        shutil.rmtree(lake)
    shutil.copytree(source, lake)
    load = load_average()
    wall, rss, _ = run_timed(
        _kale(command, work, lake, ["--set", f"{key}={str(on).lower()}"]), 1800
    )
    return {"on": on, "wall_s": round(wall, 2), "peak_rss_mb": round(rss), "loadavg_before": load}


def measure(command: str, key: str, repeats: int, work: Path, source: Path) -> dict:
    runs, gains = [], []
    for r in range(repeats):
        order = (True, False) if r % 2 == 0 else (False, True)
        pair = {on: one_run(command, key, on, work, source) for on in order}
        runs += [pair[order[0]], pair[order[1]]]
        gains.append(pair[False]["wall_s"] / pair[True]["wall_s"])
        print(f"{command} {key}: on {pair[True]['wall_s']} s, off {pair[False]['wall_s']} s")
    g = spread(gains)
    return {
        "gain": g["median"],
        "gain_min": g["min"],
        "gain_max": g["max"],
        "on_s": spread([x["wall_s"] for x in runs if x["on"]]),
        "off_s": spread([x["wall_s"] for x in runs if not x["on"]]),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=120)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/kale-startup"))
    parser.add_argument("--out", type=Path, default=FIGURES_DIR / "startup-cpu.json")
    args = parser.parse_args(argv)
    figures = {**stamp(), "rows": args.rows, "repeats": args.repeats, "tunings": {}}
    lakes = prepare(args.workdir, args.rows)
    for name, (key, commands) in TUNINGS.items():
        for command in commands:
            result = measure(command, key, args.repeats, args.workdir, lakes[command])
            figures["tunings"][f"{name}.{command}"] = result
            print(
                f"{name} in kale {command}: gain {result['gain']} ({result['gain_min']}"
                f"-{result['gain_max']})"
            )
    args.out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(
        json.dumps(
            {
                k: {x: v[x] for x in ("gain", "gain_min", "gain_max")}
                for k, v in figures["tunings"].items()
            }
        )
    )
    shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
