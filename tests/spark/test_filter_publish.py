"""filter → publish → diff → export on local Spark + Delta.

The input `stage1_captions` rows are written directly as a Delta table: the text is
hand-written caption text with realistic prompt leaks, test input for the filter's
handling of text - not a stand-in for model output (tests/spark/test_stage1.py runs the
real models). `samples` and `images` come from the real ingest and fetch stages on a
generated DataComp-format sample, so uids, urls and alt-texts are real.

One module-scoped pipeline: release 1 from the first sample, release 2 after more
sample rows and captions arrive.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import math
import tarfile
from pathlib import Path

import pytest

from kale_spark import schema
from kale_spark.cli import commands as cli
from kale_spark.config import load_config
from kale_spark.curation import RULE_NAMES
from kale_spark.lake.tables import Lake
from kale_spark.lake.versioning import diff_versions
from kale_spark.prompts import FUSE_CAPSFUSION_V1
from kale_spark.release.export import export_release
from kale_spark.sources.sample import generate_sample
from kale_spark.stages import fetch, ingest, publish
from kale_spark.stages import filter as filter_stage

ROWS_1 = 10
ROWS_2 = 4
ROWS_PER_SHARD = 3
GEN_PARAMS = '{"do_sample":false,"max_new_tokens":80,"num_beams":3}'

LEAK_REF = "As indicated in Sentence 1, the photo was taken on a clear afternoon."
LEAK_ECHO = "The image exhibits nice sentence structure and detailed visual description."
LEAK_META = "Here is the merged caption:"


# A fused caption (kept): 12 + 19 words, counted by hand.
BODY = (
    "The photo shows a tall tower in the city center at dusk. Warm light falls across the "
    "scene, and a few people walk past a row of trees on the left."
)
BODY_WORDS = 31


def _captions() -> list[tuple[list[tuple[str, str | None]], str | None, int]]:
    """Caption texts as (sentence, reason it must be removed or None) lists, with the
    reject reason the filter must give (None: kept) and the words of what is left. Row i
    of the sample gets entry i % len."""
    return [
        ([(BODY, None)], None, BODY_WORDS),
        ([(BODY, None), (LEAK_REF, "text_reference")], None, BODY_WORDS),
        ([(LEAK_ECHO, "instruction_vocabulary"), (BODY, None)], None, BODY_WORDS),
        # Every sentence leaks: the row must stay, rejected, with an empty caption.
        (
            [
                ("Sentence 1 is the alt-text of a web image.", "text_reference"),
                ("This new description keeps the real-world knowledge.", "self_reference"),
            ],
            schema.REJECT_EMPTY,
            0,
        ),
        # What survives is too short to publish.
        (
            [
                ("A tower.", None),
                ("According to the alt-text, it is in Paris.", "text_reference"),
            ],
            schema.REJECT_TOO_SHORT,
            2,
        ),
    ]


def _stage1_rows(samples: list, run_id: str) -> tuple[list[tuple], dict[str, dict]]:
    rows, expected = [], {}
    now = dt.datetime(2026, 1, 1, 12, 0, 0)
    for i, s in enumerate(samples):
        sentences, reject, words = _captions()[i % 5]
        raw = " ".join(t for t, _ in sentences)
        expected[s["uid"]] = {
            "caption": " ".join(t for t, r in sentences if r is None),
            "removed": [t for t, r in sentences if r is not None],
            "reasons": [r for _, r in sentences if r is not None],
            "reject": reject,
            "words": words,
        }
        rows.append(
            (
                s["uid"],
                s["text"],
                "a tall structure under a blue sky with trees and people walking nearby",
                "tiny:vlm",
                "dense_v1",
                raw,
                120,
                40,
                "tiny:lm",
                "tiny-v1",
                FUSE_CAPSFUSION_V1.id,
                GEN_PARAMS,
                {schema.SAMPLES: 1, schema.DENSE_CAPTIONS: 1},
                run_id,
                now,
            )
        )
    return rows, expected


def _add_stage1(spark, lake: Lake, uids: set[str] | None, run_id: str) -> dict[str, dict]:
    """Append stage-1 caption rows for `uids` (default: every sample) to the lake."""
    samples = sorted(
        (r.asDict() for r in lake.read(schema.SAMPLES).select("uid", "text").collect()),
        key=lambda r: r["uid"],
    )
    if uids is not None:
        samples = [s for s in samples if s["uid"] in uids]
    rows, expected = _stage1_rows(samples, run_id)
    lake.ensure_table(schema.STAGE1_CAPTIONS, schema.STAGE1_CAPTIONS_SCHEMA)
    lake.append(
        schema.STAGE1_CAPTIONS,
        spark.createDataFrame(rows, schema.STAGE1_CAPTIONS_SCHEMA),
        {"run_id": run_id, "stage": "test-input"},
    )
    return expected


@pytest.fixture(scope="module")
def pipeline(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("filter_publish")
    generate_sample(root / "sample1", ROWS_1, bad_fraction=0.0, seed=11, max_side=200)
    generate_sample(root / "sample2", ROWS_2, bad_fraction=0.0, seed=12, max_side=200)
    cfg = load_config(
        None,
        [
            f"lake.root={root / 'lake'}",
            "spark.master=local[2]",
            "spark.shuffle_partitions=2",
            f"ingest.input={root / 'sample1' / 'metadata'}",
            "fetch.image.resolution=64",
            f"fetch.file_root={root}",
            f"publish.rows_per_shard={ROWS_PER_SHARD}",
            "publish.shards_per_read=2",
            "publish.webdataset=true",
            "filter.min_words=5",
        ],
    )
    lake = Lake(spark, cfg.lake)
    out: dict = {"cfg": cfg, "lake": lake, "root": root}

    ingest.run(spark, cfg)
    fetch.run(spark, cfg)
    out["expected"] = _add_stage1(spark, lake, None, "augment-test-1")
    out["stage1_version"] = lake.version(schema.STAGE1_CAPTIONS)
    out["filter1"] = filter_stage.run(spark, cfg)
    out["filter1_version"] = lake.version(schema.FILTERED_CAPTIONS)
    out["filter_rerun"] = filter_stage.run(spark, cfg)
    out["filter_rerun_version"] = lake.version(schema.FILTERED_CAPTIONS)

    out["publish1"] = publish.run(spark, cfg)
    out["v1"] = lake.version(schema.KALE)
    out["export1"] = Path(lake.root) / "exports" / "kale" / f"v{out['v1']}"
    out["export1_files"] = {p.name: p.read_bytes() for p in sorted(out["export1"].iterdir())}
    out["publish_rerun"] = publish.run(spark, cfg)
    out["v1_after_rerun"] = lake.version(schema.KALE)

    # Release 2: more sample rows, their captions.
    before = {r["uid"] for r in lake.read(schema.SAMPLES).select("uid").collect()}
    ingest.run(spark, cfg, str(root / "sample2" / "metadata"))
    after = {r["uid"] for r in lake.read(schema.SAMPLES).select("uid").collect()}
    out["new_uids"] = after - before
    out["expected2"] = _add_stage1(spark, lake, out["new_uids"], "augment-test-2")
    out["filter2"] = filter_stage.run(spark, cfg)
    out["publish2"] = publish.run(spark, cfg)
    out["v2"] = lake.version(schema.KALE)
    return out


# ------------------------------------------------------------------------------ filter


def test_filter_removes_leaks_with_reasons(pipeline):
    lake, expected = pipeline["lake"], pipeline["expected"]
    rows = {
        r["uid"]: r
        for r in lake.read(schema.FILTERED_CAPTIONS, version=pipeline["filter1_version"]).collect()
    }
    assert set(rows) == set(expected)  # every stage-1 row is in filtered_captions
    for uid, want in expected.items():
        row = rows[uid]
        assert row["stage"] == "stage1"
        assert row["caption"] == want["caption"], uid
        assert row["removed_sentences"] == want["removed"], uid
        assert row["removal_reasons"] == want["reasons"], uid
        assert row["reject_reason"] == want["reject"], uid
        assert row["rejected"] is (want["reject"] is not None)
        assert row["model"] == "tiny:lm" and row["prompt_id"] == FUSE_CAPSFUSION_V1.id
        assert row["gen_params"] == GEN_PARAMS
        assert row["caption_run_id"] == "augment-test-1"
        assert row["run_id"] == pipeline["filter1"].run_id
        assert row["source_versions"] == {
            schema.SAMPLES: 1,
            schema.DENSE_CAPTIONS: 1,
            schema.STAGE1_CAPTIONS: pipeline["stage1_version"],
        }
        assert row["word_count"] == want["words"], uid


def test_filter_rejects_keep_their_reason(pipeline):
    rows = pipeline["lake"].read(schema.FILTERED_CAPTIONS).where("rejected").collect()
    by_reason = {}
    for r in rows:
        by_reason.setdefault(r["reject_reason"], []).append(r)
    assert sorted(by_reason) == [schema.REJECT_EMPTY, schema.REJECT_TOO_SHORT]
    for r in by_reason[schema.REJECT_EMPTY]:
        assert r["caption"] == "" and r["caption_raw"] and r["word_count"] == 0
    for r in by_reason[schema.REJECT_TOO_SHORT]:
        assert r["caption"] == "A tower." and r["word_count"] == 2


def test_filter_counts_and_rerun(pipeline):
    first, rerun = pipeline["filter1"], pipeline["filter_rerun"]
    n = len(pipeline["expected"])
    rejected = sum(1 for e in pipeline["expected"].values() if e["reject"])
    assert first.counts["input"] == n and first.counts["inserted"] == n
    assert first.counts["kept"] == n - rejected and first.counts["rejected"] == rejected
    assert first.counts[f"rejected.{schema.REJECT_EMPTY}"] == 2
    assert first.counts[f"rejected.{schema.REJECT_TOO_SHORT}"] == 2
    # Every rule has its count in the run, so a release shows which rules fired how often.
    rules = {k: v for k, v in first.counts.items() if k.startswith("rule.")}
    assert set(rules) == {f"rule.{name}" for name in RULE_NAMES}
    assert {k: v for k, v in rules.items() if v} == {
        "rule.text_reference": 6,
        "rule.instruction_vocabulary": 2,
        "rule.self_reference": 2,
    }
    assert any("removed by rule: instruction_vocabulary=2" in note for note in first.notes)
    assert any("rejected" in note and "mean" in note for note in first.notes)
    assert rerun.counts["inserted"] == 0 and rerun.counts["already_filtered"] == n
    assert pipeline["filter_rerun_version"] == pipeline["filter1_version"]


# ----------------------------------------------------------------------------- publish


def _kept(expected: dict) -> set[str]:
    return {uid for uid, e in expected.items() if e["reject"] is None}


def test_publish_gold_table_and_release(pipeline, spark):
    lake, v1 = pipeline["lake"], pipeline["v1"]
    kept = _kept(pipeline["expected"])
    gold = lake.read(schema.KALE, version=v1)
    assert {r["uid"] for r in gold.select("uid").collect()} == kept
    assert gold.columns == schema.KALE_SCHEMA.fieldNames()
    samples = {r["uid"]: r for r in lake.read(schema.SAMPLES).collect()}
    for r in gold.collect():
        assert r["url"] == samples[r["uid"]]["url"]
        assert r["alt_text"] == samples[r["uid"]]["text"]
        assert r["caption"] == pipeline["expected"][r["uid"]]["caption"]
        assert r["filter_run_id"] == pipeline["filter1"].run_id
    releases = lake.read(schema.RELEASES).orderBy("release").collect()
    assert [(r["release"], r["version"], r["rows"]) for r in releases][0] == (1, v1, len(kept))
    assert (
        releases[0]["rows_added"] == len(kept)
        and releases[0]["run_id"] == pipeline["publish1"].run_id
    )
    meta = [
        json.loads(r["userMetadata"])
        for r in lake.history(schema.KALE).collect()
        if r["userMetadata"] and "release" in r["userMetadata"]
    ]
    assert {m["release"] for m in meta if m["run_id"] == pipeline["publish1"].run_id} == {"1"}
    sql = f"SELECT count(*) AS n FROM {lake.database}.kale VERSION AS OF {v1}"
    assert spark.sql(sql).first()["n"] == len(kept)


def test_word_stats_in_run_summaries_and_card(pipeline):
    from kale_spark.curation.quality import word_stats, word_stats_lines

    lake, v1 = pipeline["lake"], pipeline["v1"]
    gold = [r.asDict() for r in lake.read(schema.KALE, version=v1).collect()]
    stats = word_stats(gold)  # the pure reference over the published rows
    expected = word_stats_lines(stats)
    assert expected[1].startswith("  stage1: caption ")
    notes = pipeline["publish1"].notes
    at = notes.index(f"kale v{v1}, {expected[0]}")
    assert notes[at + 1 : at + len(expected)] == expected[1:]
    filter_notes = pipeline["filter1"].notes
    assert f"kept captions, {expected[0]}" in filter_notes
    card_text = (pipeline["export1"] / "README.md").read_text()
    row = next(s for s in stats if (s.stage, s.field) == ("stage1", "caption"))
    assert f"| stage1 | `caption` | {row.n} | {row.mean:.1f} | {row.median:.1f} |" in card_text
    assert "| KALE (paper) | `caption` | n/a | 67.26 | n/a |" in card_text


def test_publish_rerun_adds_nothing(pipeline):
    rerun = pipeline["publish_rerun"]
    assert pipeline["v1_after_rerun"] == pipeline["v1"]
    assert rerun.counts["release"] == 0 and rerun.counts["merged_inserted"] == 0
    assert any("no changes" in n for n in rerun.notes)


def test_export_loads_with_datasets(pipeline):
    import datasets

    kept = _kept(pipeline["expected"])
    export = pipeline["export1"]
    files = sorted(glob.glob(str(export / "part-*.parquet")))
    assert len(files) == math.ceil(len(kept) / ROWS_PER_SHARD)
    ds = datasets.load_dataset(
        "parquet", data_files=files, split="train", cache_dir=str(pipeline["root"] / "hf")
    )
    assert ds.num_rows == len(kept)
    assert ds.column_names == schema.KALE_SCHEMA.fieldNames()
    assert ds["uid"] == sorted(kept)  # deterministic order
    assert ds.features["caption"].dtype == "string"
    assert ds.features["word_count"].dtype == "int32"
    assert ds.features["novel_share"].dtype == "float64"
    assert ds.features["removed_sentences"].feature.dtype == "string"
    manifest = json.loads((export / "manifest.json").read_text())
    shard_rows = [f["rows"] for f in manifest["files"] if f["file"].endswith(".parquet")]
    assert shard_rows == [
        min(ROWS_PER_SHARD, len(kept) - i) for i in range(0, len(kept), ROWS_PER_SHARD)
    ]
    assert manifest["version"] == pipeline["v1"] and manifest["release"] == 1
    card = (export / "README.md").read_text()
    assert f"| rows | {len(kept)} |" in card and "release 1" in card
    from PIL import Image

    with Image.open(export / "caption_length_hist.png") as img:
        assert img.size == (800, 420)


def test_export_webdataset_tars(pipeline):
    export = pipeline["export1"]
    tars = sorted(export.glob("part-*.tar"))
    assert len(tars) == math.ceil(len(_kept(pipeline["expected"])) / ROWS_PER_SHARD)
    with tarfile.open(tars[0]) as tar:
        names = tar.getnames()
        assert len(names) == 3 * ROWS_PER_SHARD
        uid = names[0].split(".")[0]
        txt = tar.extractfile(f"{uid}.txt").read().decode()
        meta = json.loads(tar.extractfile(f"{uid}.json").read())
    assert txt == pipeline["expected"][uid]["caption"] == meta["caption"]
    assert {n.split(".", 1)[1] for n in names} <= {"jpg", "png", "webp", "txt", "json"}


def test_delta_version_reads_with_deltalake(pipeline):
    from deltalake import DeltaTable

    lake = pipeline["lake"]
    table = DeltaTable(lake.path(schema.KALE), version=pipeline["v1"]).to_pyarrow_table()
    assert table.num_rows == len(_kept(pipeline["expected"]))
    latest = DeltaTable(lake.path(schema.KALE)).to_pyarrow_table()
    assert latest.num_rows == len(_kept(pipeline["expected"])) + len(_kept(pipeline["expected2"]))


# ------------------------------------------------------------------------ versioning


def test_second_release_and_diff(pipeline):
    lake, v1, v2 = pipeline["lake"], pipeline["v1"], pipeline["v2"]
    new_kept = _kept(pipeline["expected2"])
    assert pipeline["new_uids"] and new_kept
    assert pipeline["filter2"].counts["inserted"] == len(pipeline["new_uids"])
    assert pipeline["publish2"].counts["release"] == 2
    result = diff_versions(lake, schema.KALE, v1, v2)
    assert result.added == tuple(sorted(new_kept))
    assert result.removed == () and result.changed == ()
    assert result.method == "cdf"
    back = diff_versions(lake, schema.KALE, v2, v1)
    assert back.removed == tuple(sorted(new_kept)) and back.added == ()
    rel = lake.read(schema.RELEASES).where("release = 2").first()
    assert (rel["version"], rel["rows_added"], rel["rows_removed"]) == (v2, len(new_kept), 0)


def test_cli_diff_prints_counts(pipeline, capsys):
    args = ["diff", "kale", "--from", str(pipeline["v1"]), "--to", str(pipeline["v2"])]
    rc = cli.main([*args, "--set", f"lake.root={pipeline['lake'].root}"])
    out = capsys.readouterr().out
    assert rc == 0
    n = len(_kept(pipeline["expected2"]))
    assert f"{n} added, 0 removed, 0 changed" in out


def test_cli_summary_prints_word_stats(pipeline, capsys):
    from kale_spark.curation.quality import word_stats, word_stats_lines

    lake, v2 = pipeline["lake"], pipeline["v2"]
    rc = cli.main(["summary", "--set", f"lake.root={lake.root}"])
    out = capsys.readouterr().out
    assert rc == 0
    gold = [r.asDict() for r in lake.read(schema.KALE, version=v2).collect()]
    expected = word_stats_lines(word_stats(gold))
    assert f"  kale v{v2}, {expected[0]}" in out.splitlines()
    for line in expected[1:]:
        assert f"  {line}" in out.splitlines()


def test_export_old_version_reproduces_it(pipeline, tmp_path):
    lake, cfg, v1 = pipeline["lake"], pipeline["cfg"], pipeline["v1"]
    again = Path(export_release(lake, cfg, v1, out=str(tmp_path / "again")))
    files = {p.name: p.read_bytes() for p in sorted(again.iterdir())}
    assert files.keys() == pipeline["export1_files"].keys()
    for name, data in files.items():
        assert data == pipeline["export1_files"][name], name
    # and through the CLI, into the default folder of that version
    rc = cli.main(
        [
            "export",
            "--version",
            str(v1),
            "--set",
            f"lake.root={lake.root}",
            "--set",
            f"publish.rows_per_shard={ROWS_PER_SHARD}",
            "--set",
            "publish.webdataset=true",
        ]
    )
    assert rc == 0
    redone = {p.name: p.read_bytes() for p in sorted(pipeline["export1"].iterdir())}
    assert redone == pipeline["export1_files"]
