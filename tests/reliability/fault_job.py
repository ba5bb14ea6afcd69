"""The part of tests/reliability/test_faults.py that needs Spark's task retry: a driver
on `local[2,2]` (local mode retries a failed task only when the master says so).

    python -m tests.reliability.fault_job <overrides.json>

caption with a killed Python worker and out-of-memory batches; then augment with a
raising UDF and a commit that fails once (it must fail clearly), then augment again.
Prints one `RESULT <json>` line."""

from __future__ import annotations

import json
import sys
import time


def main(path: str) -> None:
    from kale_spark.config import load_config
    from kale_spark.spark.session import get_session
    from kale_spark.stages import augment, caption

    started = time.monotonic()
    spec = json.loads(open(path).read())
    base = spec["base"]
    spark = get_session(load_config(None, base).spark)
    out: dict[str, object] = {"session_s": round(time.monotonic() - started, 1)}
    run = caption.run(spark, load_config(None, base + spec["caption"]))
    out["caption"] = run.counts
    cfg = load_config(None, base + spec["augment"])
    try:
        augment.run(spark, cfg)
        out["augment_first"] = "ok"
    except Exception as exc:  # the injected commit failure: its message must say so
        # The exception's head and the injected fault's own message, wherever the
        # traceback (its length set by the checkout's paths) puts it.
        text = f"{type(exc).__name__}: {exc}"
        at = text.find("kale fault injected")
        out["augment_first"] = text[:300] + (" ... " + text[at : at + 300] if at >= 0 else "")
    out["augment"] = augment.run(spark, cfg).counts
    out["total_s"] = round(time.monotonic() - started, 1)
    print("RESULT " + json.dumps(out, default=str), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
