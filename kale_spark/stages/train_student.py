"""Train-student: the kept stage-1 captions of a pinned `filtered_captions` version →
the stage-2 student checkpoint (KALE Stage 2a).

    filtered_captions@v (stage1, not rejected; one caption per uid, the newest)
      ⨝ images (ok: the image bytes)  ⨝ samples (the alt-text)
      ─ split by uid hash (student.train.val_fraction) ─▶ train / validation
      ─ Parquet snapshot <snapshot_dir>/<data key>/split=train|val + manifest.json
        (written by Spark in one job: the image bytes are read once)
      ─ TorchDistributor(num_processes ranks).run(training.loop.train_entry)
      ─▶ <checkpoint_dir>/<training key>/final  (a saved LLaVA model + provenance.json)

The snapshot is keyed by the data only (``data_key``): the training rows' content,
the images version (the bytes as fetch stored them; the loader preprocesses them for
the student) and the split settings. Training settings (lr, steps, batch size,
ranks ...) key the run directory instead, so changing them trains a new run on the
same snapshot. The snapshot's location is one URI with its scheme
(`student.train.snapshot_dir`, default `file://<checkpoint root>/snapshots`): Spark writes
it, and the driver (the manifest) and every rank read that same URI through pyarrow;
a URI pyarrow cannot open is refused before anything is written. Spark's row count
of the training rows is checked against the manifest, so files the driver cannot
see (a `file://` location that is not shared by every node) fail before training.

Training runs through TorchDistributor with its own resource setting
(resources.student_distributor: one whole GPU per rank on a GPU cluster). A rerun on
the same inputs trains nothing (the final checkpoint exists); an interrupted run
resumes from its last checkpoint at each rank's recorded read position.
`--clean-snapshots` (`student.train.clean_snapshots`) removes the snapshots no resumable run
uses before training. `<checkpoint_dir>/LATEST.json` names the newest final checkpoint
for student-caption. The runs row records the table versions read, row counts, steps,
`world_size`, the rows each rank trained on (`samples.rank_<r>`) and the losses of
every eval interval, overall and per rank (`metrics`).
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
from kale_spark.lake.runs import StageRun, stage_run
from kale_spark.lake.tables import Lake
from kale_spark.split import VALIDATION_SALT, in_share_col

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

STAGE = "train-student"
LATEST = "LATEST.json"
SNAPSHOTS = "snapshots"
# The snapshot's layout and row selection; a change here is a new data key.
SNAPSHOT_FORMAT = 2
# Row groups of this size: a loader worker reads whole row groups, one batch at a time.
ROW_GROUP_BYTES = 8 * 1024 * 1024
# Settings that change the trained weights, by section: a change means a new run
# directory. The model section counts whole; from the caption spec, the prompt the
# student reads and its token budget.
TRAINING_FIELDS = (
    "lr",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "max_steps",
    "batch_size",
    "num_processes",
    "max_caption_tokens",
    "seed",
    "dtype",
)
CAPTION_FIELDS = ("prompt_id", "max_input_tokens")


def training_settings(student: Any) -> dict[str, Any]:
    """The settings of ``student`` (a StudentConfig) that the training key covers."""
    from dataclasses import asdict

    settings = asdict(student.model)
    settings.update({n: getattr(student.train, n) for n in TRAINING_FIELDS})
    settings.update({n: getattr(student.caption, n) for n in CAPTION_FIELDS})
    return settings


def checkpoint_root(lake: Lake, cfg: Config) -> Path:
    """Where runs live: `student.train.checkpoint_dir`, else <lake.root>/student (a local or
    mounted path: checkpoints are written with plain file I/O)."""
    root = cfg.student.train.checkpoint_dir or lake.path("student")
    if "://" in root.removeprefix("file://"):
        raise ValueError(
            f"student checkpoints need a local or mounted path (e.g. /dbfs/...), not {root}: "
            "set student.train.checkpoint_dir"
        )
    return Path(root.removeprefix("file://").removeprefix("file:")).absolute()


def snapshot_root(lake: Lake, cfg: Config) -> str:
    """The snapshots' root as a URI with its scheme (a bare path becomes file://)."""
    root = cfg.student.train.snapshot_dir or str(checkpoint_root(lake, cfg) / SNAPSHOTS)
    if "://" in root:
        return root.rstrip("/")
    return Path(root.removeprefix("file:")).absolute().as_uri()


def pinned_versions(lake: Lake, cfg: Config) -> dict[str, int]:
    """The versions training reads: `student.train.source_version` of filtered_captions (or
    its latest), and the current images and samples."""
    for table, step in (
        (schema.FILTERED_CAPTIONS, "filter"),
        (schema.IMAGES, "fetch"),
        (schema.SAMPLES, "ingest"),
    ):
        if not lake.exists(table):
            raise LookupError(f"no `{table}` table yet: run `kale {step}` first")
    pinned = cfg.student.train.source_version
    latest = lake.version(schema.FILTERED_CAPTIONS)
    if pinned is not None and pinned > latest:
        raise LookupError(
            f"student.train.source_version {pinned}: filtered_captions is at v{latest}"
        )
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
        "is_val", in_share_col(F.col("uid"), VALIDATION_SALT, cfg.student.train.val_fraction)
    )


def fingerprint(rows: DataFrame) -> dict[str, Any]:
    """Row counts and an order-free content hash per split, in one Spark job (keys and
    texts only: the image bytes are not read)."""
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


def data_key(cfg: Config, fp: dict[str, Any], versions: dict[str, int]) -> str:
    """The snapshot's identity: the data it holds, nothing about how it is trained on.

    The training rows by content (``fingerprint``: uid, caption, alt-text and the
    image's hash, per split) rather than by the filtered_captions version number: a
    later version that only adds stage-2 rows holds the same training rows, so a
    second `kale run` reuses the snapshot and the finished run. The images version
    stands for the stored bytes (fetch's image settings); the split settings decide
    which rows validate.
    """
    data = {
        "format": SNAPSHOT_FORMAT,
        "rows": fp,
        "images_version": versions[schema.IMAGES],
        "split": {"val_fraction": cfg.student.train.val_fraction, "salt": VALIDATION_SALT},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def training_key(cfg: Config, snapshot_key: str) -> str:
    settings = training_settings(cfg.student)
    blob = json.dumps({"data": snapshot_key, "student": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_snapshot(
    rows: DataFrame, uri: str, files: int, expected: dict[str, int], **info: Any
) -> dict[str, Any]:
    """Both splits under ``uri`` (``split=train``, ``split=val``) in one Spark job, in a
    fixed order within each file, then the manifest; returns the manifest. Reuses a
    snapshot whose manifest exists. ``expected``: rows per split, as Spark counted."""
    from pyspark.sql import functions as F

    from kale_spark.student.data import COLUMNS, build_manifest, read_manifest, write_manifest

    manifest = read_manifest(uri)  # also refuses a URI the trainers could not open
    if manifest is not None:
        log.info("training snapshot %s: reused", uri)
        return manifest
    order = [F.xxhash64("uid"), F.col("uid")]
    (
        rows.withColumn("split", F.when(F.col("is_val"), "val").otherwise("train"))
        .select(*COLUMNS, "split")
        .repartition(files, F.xxhash64("uid"))
        .sortWithinPartitions("split", *order)
        .write.mode("overwrite")
        .partitionBy("split")
        .option("parquet.block.size", ROW_GROUP_BYTES)
        .parquet(uri)
    )
    manifest = build_manifest(uri, **info)
    seen = {split: manifest["splits"][split]["rows"] for split in expected}
    if seen != expected:
        raise RuntimeError(
            f"Spark wrote {expected} rows to the snapshot {uri}, the driver sees {seen} "
            "there: the snapshot location must be one every node and the trainers share "
            "(student.train.snapshot_dir)"
        )
    write_manifest(uri, manifest)
    log.info("training snapshot %s: %s rows", uri, expected)
    return manifest


def snapshots_in_use(root: Path) -> set[str]:
    """Data keys of the snapshots that a run under ``root`` could still resume on: its
    newest checkpoint names the snapshot and it has no final student yet."""
    from kale_spark.student import checkpoints
    from kale_spark.student.loop import FINAL, PROVENANCE

    used: set[str] = set()
    for run_dir in sorted(root.iterdir()) if root.is_dir() else []:
        ckpts = run_dir / "checkpoints"
        step = checkpoints.latest(ckpts)
        if step is None or (run_dir / FINAL / PROVENANCE).is_file():
            continue
        key = checkpoints.read_extra(ckpts, step).get("snapshot")
        if key:
            used.add(key)
    return used


def clean_snapshots(uri: str, keep: set[str]) -> list[str]:
    """Remove the snapshots under ``uri`` whose data key is not in ``keep``."""
    from pyarrow import fs

    from kale_spark.student.data import arrow_location

    filesystem, root = arrow_location(uri)
    removed = []
    for info in filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True)):
        if info.type == fs.FileType.Directory and info.base_name not in keep:
            filesystem.delete_dir(info.path)
            removed.append(info.base_name)
    log.info("snapshots removed under %s: %s", uri, removed or "none")
    return sorted(removed)


def _distribute(spark: SparkSession, job: Any) -> dict[str, Any]:
    """Run the training loop through TorchDistributor; rank 0's result."""
    from kale_spark.spark.resources import student_distributor
    from kale_spark.student.loop import train_entry

    s = job.student.train
    distributor = student_distributor(spark, s)
    log.info(
        "training with TorchDistributor: %d process(es), local_mode=%s, use_gpu=%s",
        s.num_processes,
        s.local_mode,
        s.use_gpu,
    )
    return distributor.run(train_entry, job)


def _record(run: StageRun, provenance: dict[str, Any]) -> None:
    history = provenance.get("history", [])
    for point in history:
        tag = f"step_{int(point['step']):06d}"
        for name in ("train_loss", "val_loss"):
            value = point.get(name)
            if value is not None and value == value:  # not NaN
                run.metrics[f"{name}.{tag}"] = float(value)
        for r, value in enumerate(point.get("train_loss_by_rank", [])):
            run.metrics[f"train_loss.rank_{r}.{tag}"] = float(value)
    vals = [p["val_loss"] for p in history if p.get("val_loss") == p.get("val_loss")]
    if vals:
        run.metrics["val_loss_before"] = float(vals[0])
        run.metrics["val_loss_after"] = float(vals[-1])
    run.metrics["world_size"] = float(provenance.get("world_size", 1))
    for r, n in enumerate(provenance.get("samples_by_rank", [])):
        run.metrics[f"samples.rank_{r}"] = float(n)


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


def _provenance(cfg: Config, run: StageRun, versions: dict[str, int], data: dict, key: str):
    s = cfg.student.model
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
        "data": data,
        "run_id": run.run_id,
    }


def _snapshot(lake: Lake, cfg: Config, run: StageRun, versions) -> tuple[str, dict]:
    """(the snapshot's URI, its manifest): cleaned up around it if asked, written if new."""
    rows = training_rows(lake, cfg, versions)
    fp = fingerprint(rows)
    key = data_key(cfg, fp, versions)
    root_uri = snapshot_root(lake, cfg)
    uri = f"{root_uri}/{key}"
    if cfg.student.train.clean_snapshots:
        keep = snapshots_in_use(checkpoint_root(lake, cfg)) | {key}
        removed = clean_snapshots(root_uri, keep)
        run.counts["snapshots_removed"] = len(removed)
        run.notes.append(f"snapshots removed: {', '.join(removed) or 'none'}")
    expected = {"train": fp["train_rows"], "val": fp["val_rows"]}
    manifest = write_snapshot(
        rows, uri, cfg.student.train.snapshot_files, expected, key=key, versions=versions, data=fp
    )
    return uri, manifest


def rank_threads(s: Any, cores: int) -> int:
    """Torch threads of one training rank: its share of the cores, less one for each of
    its DataLoader workers (they decode and preprocess on the same cores)."""
    return max(1, cores // s.num_processes - s.loader_workers)


def _train(spark, cfg: Config, run: StageRun, run_dir: Path, uri: str, provenance) -> None:
    from kale_spark.student.loop import TrainJob
    from kale_spark.student.model import build_base

    s = cfg.student
    run_dir.mkdir(parents=True, exist_ok=True)
    base = build_base(s, run_dir / "base", cfg.models.cache_dir or None)
    job = TrainJob(
        student=s,
        run_dir=str(run_dir),
        base_dir=str(base),
        snapshot=uri,
        torch_threads=cfg.models.torch_threads or rank_threads(s.train, os.cpu_count() or 1),
        provenance=provenance,
    )
    result = _distribute(spark, job)
    run.counts.update(
        resumed_from_step=result["resumed_from"],
        trained_steps=result["steps"] - result["resumed_from"],
    )


def run(spark: SparkSession, cfg: Config) -> StageRun:
    """Train the student on the kept stage-1 captions (or reuse the finished run)."""
    from kale_spark.student.loop import FINAL, PROVENANCE

    lake = Lake(spark, cfg.lake)
    with stage_run(lake, cfg, STAGE) as run:
        versions = pinned_versions(lake, cfg)
        run.input_versions.update(versions)
        uri, manifest = _snapshot(lake, cfg, run, versions)
        rows = {split: manifest["splits"][split]["rows"] for split in ("train", "val")}
        run.counts.update(train_rows=rows["train"], val_rows=rows["val"])
        if rows["train"] == 0:
            raise LookupError("no kept stage-1 captions with an ok image to train on")
        root = checkpoint_root(lake, cfg)
        key = training_key(cfg, manifest["key"])
        final = root / key / FINAL
        data = {
            "snapshot": manifest["key"],
            "snapshot_uri": uri,
            **{f"{k}_rows": v for k, v in rows.items()},
        }
        if not (final / PROVENANCE).is_file():
            provenance = _provenance(cfg, run, versions, data, key)
            _train(spark, cfg, run, root / key, uri, provenance)
        else:
            run.counts.update(resumed_from_step=cfg.student.train.max_steps, trained_steps=0)
            run.notes.append(f"already trained on these inputs: {final}")
        provenance = json.loads((final / PROVENANCE).read_text())
        _write_latest(root, final, provenance)
        run.counts["steps"] = int(provenance["steps"])
        _record(run, provenance)
        run.notes.append(
            f"student {final} ({provenance['content_hash'][:19]}...), trained on "
            f"filtered_captions v{versions[schema.FILTERED_CAPTIONS]}: "
            f"{rows['train']} train / {rows['val']} validation rows on "
            f"{int(run.metrics['world_size'])} rank(s); validation loss "
            f"{run.metrics.get('val_loss_before', float('nan')):.3f} → "
            f"{run.metrics.get('val_loss_after', float('nan')):.3f}"
        )
    return run
