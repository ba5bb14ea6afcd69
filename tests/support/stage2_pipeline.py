"""The whole pipeline (both KALE stages) on a small generated sample: the settings
tests/spark/test_stage2.py checks it under, and the uninterrupted reference run that
it and tests/reliability/ share (one run per test session, conftest
`stage2_reference`)."""

from __future__ import annotations

from pathlib import Path

ROWS = 14
TEACHER_FRACTION = 0.5
STEPS = 6
SAMPLE_SEED = 5


def overrides(root: Path) -> list[str]:
    return [
        f"lake.root={root / 'lake'}",
        "spark.master=local[2]",
        "spark.shuffle_partitions=2",
        "spark.arrow_batch_size=8",
        f"sample.out={root / 'sample'}",
        f"ingest.input={root / 'sample' / 'metadata'}",
        f"fetch.file_root={root / 'sample'}",  # the sample's images are file:// URLs
        f"models.cache_dir={root / 'model-cache'}",
        "models.torch_threads=1",
        "caption.generation.max_new_tokens=12",
        "augment.generation.max_new_tokens=16",
        f"split.teacher_fraction={TEACHER_FRACTION}",
        f"student.train.max_steps={STEPS}",
        "student.train.eval_interval=3",
        "student.train.checkpoint_interval=3",
        "student.train.batch_size=2",
        "student.train.snapshot_files=2",
        "student.train.lr=0.003",
        "student.caption.generation.max_new_tokens=16",
        "student.caption.generation.min_new_tokens=8",
        # The tiny student's captions are noise a few steps in: keep every non-empty one,
        # so the published table shows both stages.
        "filter.min_words=1",
        "publish.export=false",
    ]


def write_sample(root: Path) -> None:
    from kale_spark.sources.sample import generate_sample

    generate_sample(root / "sample", ROWS, bad_fraction=0.0, seed=SAMPLE_SEED, max_side=300)
