"""The student's training data: equal row shares, seeded epochs, positions, the loader.

Snapshots here are written with pyarrow (training.data.write_snapshot, the layout
Spark's writer gives); expected shares and counts are worked out from the sizes,
not by calling the plan.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kale_spark.student import data as D


def _examples(n: int, prefix: str = "u") -> list[D.Example]:
    return [
        D.Example(f"{prefix}{i:03d}", bytes([i % 256]), f"alt {i}", f"caption {i}")
        for i in range(n)
    ]


def _snapshot(tmp_path: Path, n: int, rows_per_group: int, val: int = 0) -> tuple[str, dict]:
    uri = (tmp_path / "snap").as_uri()
    splits = {"train": _examples(n), "val": _examples(val, "v")}
    return uri, D.write_snapshot(uri, splits, rows_per_group, key="k1")


def _rank_uids(uri: str, plan: D.RankPlan, batches: range) -> list[str]:
    reader = D.SnapshotBatches(uri, plan, lambda ex: {"uids": [e.uid for e in ex]})
    return [u for b in batches for u in reader[b]["uids"]]


def test_manifest_lists_row_groups_from_the_footers(tmp_path: Path):
    uri, manifest = _snapshot(tmp_path, 23, rows_per_group=5, val=3)
    assert manifest["key"] == "k1"
    assert manifest["splits"]["train"]["rows"] == 23
    assert [g[2] for g in manifest["splits"]["train"]["groups"]] == [5, 5, 5, 5, 3]
    assert {g[0] for g in manifest["splits"]["train"]["groups"]} == {
        "split=train/part-00000.parquet"
    }
    assert D.read_manifest(uri) == manifest
    assert D.read_manifest((tmp_path / "nothing").as_uri()) is None


def test_ranks_get_equal_disjoint_shares_every_epoch(tmp_path: Path):
    uri, manifest = _snapshot(tmp_path, 23, rows_per_group=5)
    groups = D.split_groups(manifest, "train")
    plans = [D.RankPlan(groups, r, 2, 3, seed=7) for r in range(2)]
    # 23 rows, 2 ranks: 11 rows each (one row sits each epoch out); batches of 3: 4 per epoch
    assert [p.share for p in plans] == [11, 11]
    assert [p.batches_per_epoch for p in plans] == [4, 4]
    for epoch in range(3):
        per_rank = [_rank_uids(uri, p, range(4 * epoch, 4 * epoch + 4)) for p in plans]
        assert [len(u) for u in per_rank] == [11, 11]
        assert not set(per_rank[0]) & set(per_rank[1])
        assert len(set(per_rank[0]) | set(per_rank[1])) == 22


def test_each_epoch_is_reshuffled_by_the_seed(tmp_path: Path):
    uri, manifest = _snapshot(tmp_path, 40, rows_per_group=8)
    groups = D.split_groups(manifest, "train")
    plan = D.RankPlan(groups, 0, 1, 4, seed=3)
    epochs = [_rank_uids(uri, plan, range(10 * e, 10 * e + 10)) for e in range(3)]
    assert all(sorted(e) == [f"u{i:03d}" for i in range(40)] for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    again = D.RankPlan(groups, 0, 1, 4, seed=3)
    assert _rank_uids(uri, again, range(10, 20)) == epochs[1]
    other = D.RankPlan(groups, 0, 1, 4, seed=4)
    assert _rank_uids(uri, other, range(0, 10)) != epochs[0]
    unshuffled = D.RankPlan(groups, 0, 1, 4, seed=3, shuffle=False)
    assert _rank_uids(uri, unshuffled, range(0, 10)) == [f"u{i:03d}" for i in range(40)]


def test_a_rank_reads_only_its_own_row_groups(tmp_path: Path, monkeypatch):
    """8 row groups of 10 rows, 4 ranks: a rank's 20 rows span 2 or 3 groups, and it
    reads those only (not every row of the snapshot)."""
    import pyarrow.parquet as pq

    uri, manifest = _snapshot(tmp_path, 80, rows_per_group=10)
    groups = D.split_groups(manifest, "train")
    reads: list[int] = []
    real = pq.ParquetFile.read_row_group

    def spy(self, i, *args, **kwargs):
        reads.append(i)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    for rank in range(4):
        reads.clear()
        plan = D.RankPlan(groups, rank, 4, 5, seed=1)
        assert len(_rank_uids(uri, plan, range(4))) == 20
        assert 2 <= len(set(reads)) <= 3, reads
        assert len(reads) == len(set(reads))  # consecutive batches reuse a read group


def test_a_resume_seeks_without_reading_earlier_data(tmp_path: Path, monkeypatch):
    import pyarrow.parquet as pq

    uri, manifest = _snapshot(tmp_path, 30, rows_per_group=4)
    groups = D.split_groups(manifest, "train")
    plan = D.RankPlan(groups, 1, 2, 2, seed=5)  # 15 rows, 8 batches per epoch (last: 1 row)
    straight = [_rank_uids(uri, plan, range(b, b + 1)) for b in range(20)]
    assert [len(u) for u in straight[:9]] == [2] * 7 + [1, 2]
    reads: list[int] = []
    real = pq.ParquetFile.read_row_group

    def spy(self, i, *args, **kwargs):
        reads.append(i)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    for b in (3, 8, 11):
        position = plan.position(b).to_dict()
        assert set(position) == {"epoch", "index", "file", "row_group", "offset"}
        assert position["epoch"] == b // 8 and position["index"] == (b % 8) * 2
        fresh = D.RankPlan(groups, 1, 2, 2, seed=5)
        start = fresh.seek(position)
        assert start == b
        reads.clear()
        first = _rank_uids(uri, fresh, range(start, start + 1))
        assert first == straight[b]
        # the batch's own groups only: one or two reads, starting at the recorded group
        assert reads[0] == position["row_group"] and len(reads) <= 2
    with pytest.raises(ValueError, match="not on this rank's plan"):
        D.RankPlan(groups, 1, 2, 4, seed=5).seek(plan.position(3).to_dict())  # batch size
    with pytest.raises(ValueError, match="not on this rank.s plan"):
        D.RankPlan(groups, 1, 3, 2, seed=5).seek(plan.position(3).to_dict())  # world


def test_validation_ranges_hold_every_row(tmp_path: Path):
    uri, manifest = _snapshot(tmp_path, 4, rows_per_group=4, val=5)
    groups = D.split_groups(manifest, "val")
    plans = [D.RankPlan(groups, r, 2, 2, 0, shuffle=False, equal=False) for r in range(2)]
    uids = [_rank_uids(uri, p, range(p.batches_per_epoch)) for p in plans]
    assert uids == [["v000", "v001"], ["v002", "v003", "v004"]]


def test_loader_order_does_not_depend_on_workers(tmp_path: Path):
    uri, manifest = _snapshot(tmp_path, 24, rows_per_group=5)
    plan = D.RankPlan(D.split_groups(manifest, "train"), 0, 1, 4, seed=2)
    reader = D.SnapshotBatches(uri, plan, _Uids())
    got = {}
    for workers in (0, 2):
        it = D.loader(reader, 3, workers=workers, prefetch=2, pin_memory=False, seed=0, stop=15)
        got[workers] = [b["uids"] for b in it]
    assert got[0] == got[2]
    assert len(got[0]) == 12 and got[0][0] == _rank_uids(uri, plan, range(3, 4))


class _Uids:
    """A picklable encode function (what a worker runs)."""

    def __call__(self, examples: list[D.Example]) -> dict:
        return {"uids": [e.uid for e in examples]}


def test_locations_the_trainers_cannot_open_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="has no scheme"):
        D.arrow_location(str(tmp_path))
    with pytest.raises(ValueError, match="cannot open the snapshot location 'dbfs"):
        D.arrow_location("dbfs://kale/student/snapshots/x")
    filesystem, path = D.arrow_location(tmp_path.as_uri())
    assert path == str(tmp_path)
    assert type(filesystem).__name__ == "LocalFileSystem"


def test_training_settings_are_validated_and_the_cli_flag_sets_one():
    from kale_spark.cli.commands import _config_overrides, build_parser
    from kale_spark.config import ConfigError, load_config

    for bad in (
        "student.train.loader_workers=-1",
        "student.train.warmup_steps=-2",
        "student.train.loader_prefetch=0",
    ):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(None, [bad])
    parser = build_parser()
    args = parser.parse_args(["train-student", "--clean-snapshots"])
    assert load_config(None, _config_overrides(args)).student.train.clean_snapshots is True
    args = parser.parse_args(["train-student"])
    assert load_config(None, _config_overrides(args)).student.train.clean_snapshots is False


def test_the_snapshot_location_carries_its_scheme(tmp_path: Path):
    """One URI for Spark's writer and the trainers: a bare path becomes file://, a URI
    keeps its scheme, and the default sits beside the checkpoints."""
    from types import SimpleNamespace

    from kale_spark.config import load_config
    from kale_spark.stages.train_student import checkpoint_root, snapshot_root

    lake = SimpleNamespace(path=lambda name: f"{tmp_path}/lake/{name}")
    cfg = load_config(None, [])
    assert snapshot_root(lake, cfg) == f"file://{tmp_path}/lake/student/snapshots"
    assert checkpoint_root(lake, cfg) == tmp_path / "lake" / "student"
    cfg = load_config(None, ["student.train.snapshot_dir=s3a://bucket/kale/snapshots/"])
    assert snapshot_root(lake, cfg) == "s3a://bucket/kale/snapshots"
    cfg = load_config(None, ["student.train.snapshot_dir=/dbfs/kale/snaps"])
    assert snapshot_root(lake, cfg) == "file:///dbfs/kale/snaps"
