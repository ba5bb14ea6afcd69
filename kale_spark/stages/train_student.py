"""Train-student: the kept stage-1 captions of a pinned `filtered_captions` version →
the stage-2 student checkpoint (KALE Stage 2a).

    filtered_captions@v (stage1, not rejected; one caption per uid, the newest)
      ⨝ images (ok: the image bytes)  ⨝ samples (the alt-text)
      ─ split by uid hash (student.val_fraction) ─▶ train / validation
      ─ Parquet snapshot under the run dir (written by Spark, in a fixed order)
      ─ TorchDistributor(num_processes, local_mode, use_gpu).run(training.loop.train_entry)
      ─▶ <checkpoint_dir>/<key>/final  (a saved LLaVA model + provenance.json)

Nothing is collected on the driver: Spark writes the snapshot, each training process
streams its own files of it (training/data.py). The run directory is keyed by the
training set's fingerprint (rows and a hash of uid, caption, alt-text and image
sha256, per split) and the training settings, so a rerun on the same inputs trains
nothing (the final checkpoint exists) and an interrupted run resumes from its last
checkpoint. `<checkpoint_dir>/LATEST.json` names the newest final checkpoint for
student-caption. The runs row records the table versions read, row counts, steps and
the train/validation losses of every eval interval (`metrics`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_spark import schema
from kale_spark.config import Config
from kale_spark.lake import Lake
from kale_spark.runs import StageRun, stage_run
from kale_spark.split import VALIDATION_SALT, in_share_col

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

STAGE = "train-student"
LATEST = "LATEST.json"
# Settings that change the trained weights: a change means a new run directory.
TRAINING_FIELDS = (
    "vision_model",
    "vision_revision",
    "language_model",
    "language_revision",
    "image_size",
    "projector",
    "prompt_id",
    "train_parts",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "lr",
    "weight_decay",
    "max_grad_norm",
    "max_steps",
    "batch_size",
    "num_processes",
    "val_fraction",
    "max_caption_tokens",
    "max_input_tokens",
    "seed",
    "dtype",
)


def checkpoint_root(lake: Lake, cfg: Config) -> Path:
    """Where runs live: `student.checkpoint_dir`, else <lake.root>/student (a local or
    mounted path: checkpoints are written with plain file I/O)."""
    root = cfg.student.checkpoint_dir or lake.path("student")
    if "://" in root.removeprefix("file://"):
        raise ValueError(
            f"student checkpoints need a local or mounted path (e.g. /dbfs/...), not {root}: "
            "set student.checkpoint_dir"
        )
    return Path(root.removeprefix("file://").removeprefix("file:"))


def pinned_versions(lake: Lake, cfg: Config) -> dict[str, int]:
    """The versions training reads: `student.source_version` of filtered_captions (or
    its latest), and the current images and samples."""
    for table, step in (
        (schema.FILTERED_CAPTIONS, "filter"),
        (schema.IMAGES, "fetch"),
        (schema.SAMPLES, "ingest"),
    ):
        if not lake.exists(table):
            raise LookupError(f"no `{table}` table yet: run `kale {step}` first")
    pinned = cfg.student.source_version
    latest = lake.version(schema.FILTERED_CAPTIONS)
    if pinned is not None and pinned > latest:
        raise LookupError(f"student.source_version {pinned}: filtered_captions is at v{latest}")
    return {
        schema.FILTERED_CAPTIONS: latest if pinned is None else pinned,
        schema.IMAGES: lake.version(schema.IMAGES),
        schema.SAMPLES: lake.version(schema.SAMPLES),
    }


def training_rows(lake: Lake, cfg: Config, versions: dict[str, int]) -> DataFrame:
    """uid, image, image_sha256, alt_text, caption, is_val: one row per kept stage-1 uid."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    newest = Window.partitionBy("uid").orderBy(F.col("created_at").desc(), "model", "prompt_id")
    kept = (
        lake.read(schema.FILTERED_CAPTIONS, version=versions[schema.FILTERED_CAPTIONS])
        .where((F.col("stage") == "stage1") & ~F.col("rejected"))
        .withColumn("_rank", F.row_number().over(newest))
        .where(F.col("_rank") == 1)
        .select("uid", "caption")
    )
    images = (
        lake.read(schema.IMAGES, version=versions[schema.IMAGES])
        .where(F.col("status") == schema.IMAGE_OK)
        .select("uid", "image", F.col("sha256").alias("image_sha256"))
    )
    samples = lake.read(schema.SAMPLES, version=versions[schema.SAMPLES]).select(
        "uid", F.col("text").alias("alt_text")
    )
    rows = kept.join(images, "uid").join(samples, "uid")
    return rows.withColumn(
        "is_val", in_share_col(F.col("uid"), VALIDATION_SALT, cfg.student.val_fraction)
    )


def fingerprint(rows: DataFrame) -> dict[str, Any]:
    """Row counts and an order-free content hash per split, in one Spark job."""
    from pyspark.sql import functions as F

    h = F.xxhash64("uid", "caption", "alt_text", F.coalesce("image_sha256", F.lit("")))
    out: dict[str, Any] = {"train_rows": 0, "val_rows": 0, "train_hash": "0", "val_hash": "0"}
    for r in (
        rows.groupBy("is_val")
        .agg(F.count("*").alias("n"), F.sum(h.cast("decimal(38,0)")).alias("h"))
        .collect()
    ):
        split = "val" if r["is_val"] else "train"
        out[f"{split}_rows"] = int(r["n"])
        out[f"{split}_hash"] = str(r["h"])
    return out


def training_key(cfg: Config, fp: dict[str, Any]) -> str:
    settings = {name: getattr(cfg.student, name) for name in TRAINING_FIELDS}
    blob = json.dumps({"data": fp, "student": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_snapshot(rows: DataFrame, run_dir: Path, files: int) -> dict[str, str]:
    """Train and validation rows as Parquet under <run_dir>/data, in a fixed order
    (reused when a previous run finished writing them)."""
    from pyspark.sql import functions as F

    from kale_spark.training.data import COLUMNS

    paths = {}
    for split, is_val in (("train", False), ("val", True)):
        path = run_dir / "data" / split
        paths[split] = str(path)
        if (path / "_SUCCESS").is_file():
            continue
        order = [F.xxhash64("uid"), F.col("uid")]
        (
            rows.where(F.col("is_val") == is_val)
            .select(*COLUMNS)
            .repartitionByRange(files, *order)
            .sortWithinPartitions(*order)
            .write.mode("overwrite")
            .parquet(str(path))
        )
    return paths


def _distribute(job: Any, cfg: Config) -> dict[str, Any]:
    """Run the training loop through TorchDistributor; rank 0's result."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from kale_spark.training.loop import train_entry

    s = cfg.student
    distributor = TorchDistributor(
        num_processes=s.num_processes, local_mode=s.local_mode, use_gpu=s.use_gpu
    )
    log.info(
        "training with TorchDistributor: %d process(es), local_mode=%s, use_gpu=%s",
        s.num_processes,
        s.local_mode,
        s.use_gpu,
    )
    return distributor.run(train_entry, job)


def _record(run: StageRun, history: list[dict[str, Any]]) -> None:
    for point in history:
        for name in ("train_loss", "val_loss"):
            value = point.get(name)
            if value is not None and value == value:  # not NaN
                run.metrics[f"{name}.step_{int(point['step']):06d}"] = float(value)
    vals = [p["val_loss"] for p in history if p.get("val_loss") == p.get("val_loss")]
    if vals:
        run.metrics["val_loss_before"] = float(vals[0])
        run.metrics["val_loss_after"] = float(vals[-1])


def _write_latest(root: Path, final: Path, provenance: dict[str, Any]) -> None:
    pointer = {
        "path": str(final),
        "content_hash": provenance["content_hash"],
        "training_key": provenance.get("training_key"),
        "source_versions": provenance.get("source_versions"),
    }
    tmp = root / f".{LATEST}.{os.getpid()}"
    tmp.write_text(json.dumps(pointer, indent=2, sort_keys=True))
    os.replace(tmp, root / LATEST)


def read_latest(lake: Lake, cfg: Config) -> dict[str, Any] | None:
    """The newest final checkpoint train-student made (path, content hash), or None."""
    path = checkpoint_root(lake, cfg) / LATEST
    return json.loads(path.read_text()) if path.is_file() else None


def _provenance(cfg: Config, run: StageRun, versions: dict[str, int], fp, key: str):
    s = cfg.student
    return {
        "source_table": schema.FILTERED_CAPTIONS,
        "source_version": versions[schema.FILTERED_CAPTIONS],
        "source_versions": versions,
        "config_hash": cfg.config_hash(),
        "training_key": key,
        "base_models": {
            "vision": {"id": s.vision_model, "revision": s.vision_revision},
            "language": {"id": s.language_model, "revision": s.language_revision},
        },
        "data": fp,
        "run_id": run.run_id,
    }


def run(spark: SparkSession, cfg: Config) -> StageRun:
    """Train the student on the kept stage-1 captions (or reuse the finished run)."""
    from kale_spark.models.student import build_base
    from kale_spark.training.loop import FINAL, PROVENANCE, TrainJob

    lake = Lake(spark, cfg.lake)
    s = cfg.student
    with stage_run(lake, cfg, STAGE) as run:
        versions = pinned_versions(lake, cfg)
        run.input_versions.update(versions)
        rows = training_rows(lake, cfg, versions)
        fp = fingerprint(rows)
        run.counts.update(train_rows=fp["train_rows"], val_rows=fp["val_rows"])
        if fp["train_rows"] == 0:
            raise LookupError("no kept stage-1 captions with an ok image to train on")
        key = training_key(cfg, fp)
        root = checkpoint_root(lake, cfg)
        run_dir = root / key
        final = run_dir / FINAL
        if not (final / PROVENANCE).is_file():
            run_dir.mkdir(parents=True, exist_ok=True)
            paths = write_snapshot(rows, run_dir, s.snapshot_files)
            base = build_base(s, run_dir / "base", cfg.models.cache_dir or None)
            job = TrainJob(
                student=s,
                run_dir=str(run_dir),
                base_dir=str(base),
                train_data=paths["train"],
                val_data=paths["val"],
                torch_threads=cfg.models.torch_threads
                or max(1, (os.cpu_count() or 1) // s.num_processes),
                provenance=_provenance(cfg, run, versions, fp, key),
            )
            result = _distribute(job, cfg)
            run.counts.update(
                resumed_from_step=result["resumed_from"],
                trained_steps=result["steps"] - result["resumed_from"],
            )
        else:
            run.counts.update(resumed_from_step=s.max_steps, trained_steps=0)
            run.notes.append(f"already trained on these inputs: {final}")
        provenance = json.loads((final / PROVENANCE).read_text())
        _write_latest(root, final, provenance)
        run.counts["steps"] = int(provenance["steps"])
        _record(run, provenance.get("history", []))
        run.notes.append(
            f"student {final} ({provenance['content_hash'][:19]}...), trained on "
            f"filtered_captions v{versions[schema.FILTERED_CAPTIONS]}: "
            f"{fp['train_rows']} train / {fp['val_rows']} validation rows; validation loss "
            f"{run.metrics.get('val_loss_before', float('nan')):.3f} → "
            f"{run.metrics.get('val_loss_after', float('nan')):.3f}"
        )
    return run
