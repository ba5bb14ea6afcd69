"""Each stage's declared inputs and outputs (NeMo-Curator style), checked.

A stage may write only the tables it declares: :meth:`Lake.append` and every MERGE
check the commit's ``stage`` against :data:`STAGE_IO` (``runs`` is every stage's).
The tables a run records in ``runs.input_versions`` must be among its declared reads
(:func:`check_reads`, called by ``stage_run``). Commits from a stage not listed here
(tests' own inputs, table creation) are not checked. ``docs/architecture.md`` draws
the same table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kale_spark import schema


@dataclass(frozen=True)
class StageIO:
    reads: tuple[str, ...]
    writes: tuple[str, ...]


S = schema
STAGE_IO: dict[str, StageIO] = {
    "ingest": StageIO(reads=(S.SAMPLES,), writes=(S.SAMPLES, S.QUARANTINE)),
    "fetch": StageIO(reads=(S.SAMPLES, S.IMAGES), writes=(S.IMAGES,)),
    "caption": StageIO(reads=(S.IMAGES, S.DENSE_CAPTIONS), writes=(S.DENSE_CAPTIONS, S.QUARANTINE)),
    "augment": StageIO(
        reads=(S.SAMPLES, S.DENSE_CAPTIONS, S.STAGE1_CAPTIONS),
        writes=(S.STAGE1_CAPTIONS, S.QUARANTINE),
    ),
    "filter": StageIO(
        reads=(S.STAGE1_CAPTIONS, S.STAGE2_CAPTIONS, S.FILTERED_CAPTIONS),
        writes=(S.FILTERED_CAPTIONS,),
    ),
    "train-student": StageIO(reads=(S.FILTERED_CAPTIONS, S.IMAGES, S.SAMPLES), writes=()),
    "student-caption": StageIO(
        reads=(S.IMAGES, S.SAMPLES, S.STAGE2_CAPTIONS), writes=(S.STAGE2_CAPTIONS, S.QUARANTINE)
    ),
    "publish": StageIO(
        reads=(S.FILTERED_CAPTIONS, S.SAMPLES, S.IMAGES, S.KALE, S.RELEASES),
        writes=(S.KALE, S.RELEASES),
    ),
}


class UndeclaredTable(RuntimeError):
    """A stage touched a table its declaration does not name (a programming error)."""


def check_write(commit: dict[str, str], table: str) -> None:
    """Refuse a write of ``table`` by a declared stage that does not declare it."""
    io = STAGE_IO.get(commit.get("stage", ""))
    if io is not None and table != schema.RUNS and table not in io.writes:
        raise UndeclaredTable(
            f"stage {commit['stage']!r} writes `{table}`, which it does not declare "
            f"(writes: {', '.join(io.writes) or 'none'}; see lake/contracts.py)"
        )


def check_reads(stage: str, tables: Iterable[str]) -> None:
    """Refuse a run whose recorded input versions name a table its stage does not read."""
    io = STAGE_IO.get(stage)
    extra = sorted(set(tables) - set(io.reads)) if io is not None else []
    if extra:
        raise UndeclaredTable(
            f"stage {stage!r} read {', '.join(f'`{t}`' for t in extra)}, which it does not "
            f"declare (reads: {', '.join(io.reads)}; see lake/contracts.py)"
        )
