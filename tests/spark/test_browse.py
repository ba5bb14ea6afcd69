"""The static release browser: `kale browse`, `publish.browser`, and a real Chromium.

One module-scoped lake built by the real stages: a generated DataComp-format sample
(one alt-text replaced by planted markup) through ingest and fetch; hand-written
stage-1 caption text with known leaks (test input for the filter, as in
test_filter_publish.py) through filter and publish with `publish.browser` on (release
1); then new rows and new captions for two uids (release 2). The expected values come
from the hand-written captions and the inputs, never from the browser code.

The browser test drives Debian's Chromium (`apt-get install chromium`) with
Playwright's Python package through `executable_path`: Playwright's own browser
download cannot be reached from these machines. Without either, that test is skipped
with the reason; `.ci/run` installs both.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kale_spark import schema, split
from kale_spark.cli import commands as cli
from kale_spark.config import load_config
from kale_spark.lake.tables import Lake
from kale_spark.sources.sample import generate_sample
from kale_spark.stages import fetch, ingest, publish
from kale_spark.stages import filter as filter_stage

XSS = '<script>window.__kale_xss = 1</script>"><img src=x onerror="window.__kale_xss = 2">'
GEN_PARAMS = '{"do_sample":false,"max_new_tokens":80,"num_beams":3}'
BODY = (
    "The photo shows a tall tower in the city center at dusk. Warm light falls across the "
    "scene, and a few people walk past a row of trees on the left."
)
NEW_BODY = (
    "The photo shows a short tower in the old city center at dawn. Warm light falls across "
    "the scene, and a few people walk past a row of trees on the left."
)
LEAK_REF = "As indicated in Sentence 1, the photo was taken on a clear afternoon."
LEAK_ECHO = "The image exhibits nice sentence structure and detailed visual description."
THUMB_PX = 48

# (sentence, reason the filter must remove it or None) lists and the reject reason;
# row i of the sample gets entry i % 4.
CAPTIONS = [
    ([(BODY, None)], None),
    ([(BODY, None), (LEAK_REF, "text_reference")], None),
    ([(LEAK_ECHO, "instruction_vocabulary"), (BODY, None)], None),
    (
        [
            ("A tower.", None),
            ("According to the alt-text, it is in Paris.", "text_reference"),
        ],
        "too_short",
    ),
]


def _stage1(lake: Lake, spark, uids: list[str], body_of, model: str, when: dt.datetime):
    texts = {r["uid"]: r["text"] for r in lake.read(schema.SAMPLES).collect()}
    rows, expected = [], {}
    for i, uid in enumerate(uids):
        sentences, reject = body_of(i)
        raw = " ".join(t for t, _ in sentences)
        expected[uid] = {
            "caption": " ".join(t for t, r in sentences if r is None),
            "removed": [[t, r] for t, r in sentences if r is not None],
            "reject": reject,
        }
        rows.append(
            (uid, texts[uid], "a tall structure under a blue sky", "tiny:vlm", "dense_v1", raw)
            + (120, 40, model, "rev-1", "fuse_capsfusion_v1", GEN_PARAMS)
            + ({schema.SAMPLES: 1}, f"augment-{model}", when)
        )
    lake.ensure_table(schema.STAGE1_CAPTIONS, schema.STAGE1_CAPTIONS_SCHEMA)
    df = spark.createDataFrame(rows, schema.STAGE1_CAPTIONS_SCHEMA)
    lake.append(schema.STAGE1_CAPTIONS, df, {"run_id": "test", "stage": "test-input"})
    return expected


def _plant(metadata: Path) -> str:
    """Replace the alt-text of the first row of the sample's metadata with XSS; its uid."""
    path = sorted(metadata.glob("part-0*.parquet"))[0]
    table = pq.read_table(path)
    texts = table.column("text").to_pylist()
    texts[0] = XSS
    pq.write_table(table.set_column(table.schema.get_field_index("text"), "text", [texts]), path)
    return table.column("uid")[0].as_py()


@pytest.fixture(scope="module")
def lake_data(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("browse")
    first = generate_sample(root / "s1", 9, bad_fraction=0.0, seed=31, max_side=200)
    generate_sample(root / "s2", 3, bad_fraction=0.0, seed=32, max_side=200)
    planted = _plant(first.metadata_dir)
    cfg = load_config(
        None,
        [
            f"lake.root={root / 'lake'}",
            "spark.master=local[2]",
            "spark.shuffle_partitions=2",
            f"ingest.input={first.metadata_dir}",
            "fetch.image.resolution=64",
            f"fetch.file_root={root}",
            "filter.min_words=5",
            "publish.browser=true",
            f"browse.thumb_px={THUMB_PX}",
        ],
    )
    lake = Lake(spark, cfg.lake)
    ingest.run(spark, cfg)
    fetch.run(spark, cfg)
    uids1 = sorted(r["uid"] for r in lake.read(schema.SAMPLES).select("uid").collect())
    t0 = dt.datetime(2026, 1, 1, 12)
    expected = _stage1(lake, spark, uids1, lambda i: CAPTIONS[i % 4], "tiny:lm", t0)
    filter_stage.run(spark, cfg)
    out = {"cfg": cfg, "lake": lake, "root": root, "planted": planted, "expected": expected}
    out["publish1"] = publish.run(spark, cfg)
    out["v1"] = lake.version(schema.KALE)

    # Release 2: three new rows, and a newer caption for two kept uids of release 1.
    ingest.run(spark, cfg, str(root / "s2" / "metadata"))
    uids2 = sorted({r["uid"] for r in lake.read(schema.SAMPLES).collect()} - set(uids1))
    out["added"] = _stage1(lake, spark, uids2, lambda i: CAPTIONS[0], "tiny:lm", t0)
    changed = [u for u in uids1 if expected[u]["reject"] is None][:2]
    t1 = dt.datetime(2026, 2, 1, 12)
    out["changed"] = _stage1(lake, spark, changed, lambda i: ([(NEW_BODY, None)], None), "v2", t1)
    filter_stage.run(spark, cfg)
    publish.run(spark, cfg)
    out["v2"] = lake.version(schema.KALE)
    return out


def _js_value(path: Path, name: str):
    """The JSON a data file assigns to window.KALE_BROWSER.<name>."""
    text = path.read_text()
    prefix = f"window.KALE_BROWSER.{name} = "
    line = next(ln for ln in text.splitlines() if ln.startswith(prefix))
    return json.loads(line[len(prefix) :].rstrip(";"))


def _site(folder: Path) -> tuple[dict, list[dict]]:
    """(meta, every record in index order) of a written site."""
    meta = _js_value(folder / "data" / "meta.js", "meta")
    records = []
    for c in range(meta["chunks"]):
        records += _js_value(folder / "data" / f"rows-{c:04d}.js", f"chunk{c}")
    return meta, records


def _kept(expected: dict) -> set[str]:
    return {u for u, e in expected.items() if e["reject"] is None}


def _browse(lake_data, *args: str) -> int:
    settings = [
        "--set",
        f"lake.root={lake_data['lake'].root}",
        "--set",
        f"browse.thumb_px={THUMB_PX}",
    ]
    return cli.main(["browse", *args, *settings])


# ------------------------------------------------------------------------ the data


def test_publish_writes_the_release_browser(lake_data):
    v1, expected = lake_data["v1"], lake_data["expected"]
    folder = Path(lake_data["lake"].root) / "exports" / "kale" / f"v{v1}" / "browser"
    assert (folder / "index.html").is_file()
    assert (folder / "assets" / "browser.js").is_file()
    assert f"browser: {folder}/index.html" in lake_data["publish1"].notes
    meta, records = _site(folder)
    kept = _kept(expected)
    rejected = set(expected) - kept
    assert (meta["view"], meta["version"], meta["release"]) == ("release", v1, 1)
    assert meta["rows_total"] == len(kept) and meta["rejected_total"] == len(rejected)
    assert {r["uid"] for r in records if r["status"] == "kept"} == kept
    assert {r["uid"] for r in records if r["status"] == "rejected"} == rejected
    for r in records:
        want = expected[r["uid"]]
        assert r["caption"] == want["caption"], r["uid"]
        assert r["removed"] == want["removed"], r["uid"]
        assert r["reject_reason"] == want["reject"]
        assert r["stage"] == "stage1"
    planted = next(r for r in records if r["uid"] == lake_data["planted"])
    assert planted["alt_text"] == XSS


def test_figures_are_the_cards(lake_data):
    """The histogram and words-by-stage table are the export card's figures."""
    v1 = lake_data["v1"]
    export = Path(lake_data["lake"].root) / "exports" / "kale" / f"v{v1}"
    meta, _ = _site(export / "browser")
    card = (export / "README.md").read_text()
    for i, n in enumerate(meta["figures"]["histogram"]):
        lo = i * 10
        label = f"{lo}+" if i == len(meta["figures"]["histogram"]) - 1 else f"{lo}-{lo + 9}"
        assert f"| {label} | {n} |" in card
    # the kept captions are all BODY (31 words) or BODY with a leak removed
    assert meta["figures"]["histogram"][3] == len(_kept(lake_data["expected"]))
    stage1 = next(s for s in meta["figures"]["word_stats"] if s[:2] == ["stage1", "caption"])
    assert stage1[2:] == [len(_kept(lake_data["expected"])), 31.0, 31.0]


def test_thumbnails_are_small_jpegs(lake_data, tmp_path):
    from PIL import Image

    assert _browse(lake_data, "--version", str(lake_data["v1"]), "--out", str(tmp_path / "b")) == 0
    _, records = _site(tmp_path / "b")
    assert all(r["thumb"] == f"thumbs/{r['uid']}.jpg" for r in records)
    for r in records:
        with Image.open(tmp_path / "b" / r["thumb"]) as img:
            assert img.format == "JPEG" and max(img.size) <= THUMB_PX


def test_sample_is_drawn_by_uid_hash(lake_data, tmp_path):
    v2 = lake_data["v2"]
    out = tmp_path / "sample"
    args = ["--version", str(v2), "--out", str(out), "--set", "browse.sample_rows=3"]
    assert _browse(lake_data, *args) == 0
    meta, records = _site(out)
    kept = _kept(lake_data["expected"]) | set(lake_data["added"])
    smallest = sorted(kept, key=lambda u: (split.bucket(u, "kale-browse"), u))[:3]
    assert [r["uid"] for r in records if r["status"] == "kept"] == smallest
    assert meta["rows_total"] == len(kept) and meta["rows_shown"] == len(records)
    assert len([r for r in records if r["status"] == "rejected"]) <= 3


def test_hash_sample_is_the_python_rule_whatever_the_share(spark):
    from kale_spark.release.browser import BROWSE_SALT, hash_sample

    uids = [f"{i:032x}" for i in range(3000)]
    df = spark.createDataFrame([(u, i) for i, u in enumerate(uids)], "uid string, i int")
    ranked = sorted(uids, key=lambda u: (split.bucket(u, BROWSE_SALT), u))
    assert [r["uid"] for r in hash_sample(df, 25, 3000)] == ranked[:25]
    # A total far above the truth makes the hash share too small: the top of all is taken.
    assert [r["uid"] for r in hash_sample(df, 25, 10**9)] == ranked[:25]
    assert len(hash_sample(df, 5000, 3000)) == 3000
    top = split.bucket(ranked[9], BROWSE_SALT)
    assert [r["uid"] for r in hash_sample(df, 25, 3000, max_bucket=top)] == ranked[:10]
    assert set(hash_sample(df, 1, 3000)[0]) == {"uid", "i"}


def test_refuses_to_replace_a_folder_that_is_not_a_browser(lake_data, tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert _browse(lake_data, "--version", str(lake_data["v1"]), "--out", str(tmp_path)) == 1
    assert "holds no kale browser" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert _browse(lake_data, "--version", "99", "--out", str(tmp_path / "x")) == 1
    assert "asked for 99" in capsys.readouterr().err


def test_diff_between_releases(lake_data, tmp_path):
    v1, v2 = lake_data["v1"], lake_data["v2"]
    assert _browse(lake_data, "--from", str(v1), "--to", str(v2), "--out", str(tmp_path)) == 0
    meta, records = _site(tmp_path)
    added, changed = set(lake_data["added"]), set(lake_data["changed"])
    assert meta["counts"] == {"added": len(added), "removed": 0, "changed": len(changed)}
    assert {r["uid"] for r in records if r["change"] == "added"} == added
    assert {r["uid"] for r in records if r["change"] == "changed"} == changed
    for r in records:
        if r["change"] != "changed":
            assert r["old"] is None and r["new"]["caption"] == BODY
            continue
        assert r["new"]["model"] == "v2" and "caption" in r["columns_changed"]
        old_runs, new_runs = r["caption_diff"]
        assert [w for w, mark in old_runs if mark] == ["tall", "dusk."]
        assert [w for w, mark in new_runs if mark] == ["short", "old", "dawn."]
        assert " ".join(w for w, _ in old_runs) == r["old"]["caption"]
        assert " ".join(w for w, _ in new_runs) == NEW_BODY


def test_diff_backwards_shows_removed_rows(lake_data, tmp_path):
    v1, v2 = lake_data["v1"], lake_data["v2"]
    assert _browse(lake_data, "--from", str(v2), "--to", str(v1), "--out", str(tmp_path)) == 0
    meta, records = _site(tmp_path)
    assert meta["counts"]["removed"] == len(lake_data["added"])
    removed = [r for r in records if r["change"] == "removed"]
    assert {r["uid"] for r in removed} == set(lake_data["added"])
    assert all(r["new"] is None and r["old"]["caption"] == BODY for r in removed)


def test_browse_argument_errors(lake_data, capsys):
    assert _browse(lake_data, "--version", "1", "--from", "0") == 2
    assert _browse(lake_data, "--to", "1") == 2
    assert "not both" in capsys.readouterr().err


# ------------------------------------------------------------------ a real browser


def _chromium() -> str:
    """Debian's chromium for Playwright, or skip the test saying what is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("needs Playwright's Python package: pip install -e '.[dev]'")
    exe = os.environ.get("KALE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(exe):
        pytest.skip("needs Debian's chromium (apt-get install -y chromium); .ci/run installs it")
    return exe


# Flags for a closed network: no background fetches, no component updates, no sync.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def page():
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.dialogs = []  # alert() / confirm() a planted script would open
        pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
        yield pg
        browser.close()


def _open(page, folder: Path) -> None:
    page.goto((folder / "index.html").as_uri())
    page.wait_for_selector("body[data-state=ready]")


def _search(page, text: str) -> None:
    """Type a search and wait until the grid shows its result."""
    page.fill("#search", text)
    page.wait_for_function(
        "q => document.body.dataset.state === 'ready' && document.body.dataset.query === q",
        arg=text,
    )


def test_release_browser_in_chromium(lake_data, page, tmp_path):
    v1, expected = lake_data["v1"], lake_data["expected"]
    folder = Path(lake_data["lake"].root) / "exports" / "kale" / f"v{v1}" / "browser"
    _open(page, folder)
    total = len(expected)  # kept and rejected captions: all fit one page
    assert page.get_attribute("#count", "data-count") == str(total)
    assert page.locator("#grid .card").count() == total
    page.screenshot(path=str(tmp_path / "release.png"), full_page=True)

    # The planted markup is shown as text; it never ran and never became elements.
    assert page.evaluate("window.__kale_xss") is None
    assert page.dialogs == []
    assert page.locator("img[src=x]").count() == 0
    card = page.locator(f"#grid .card[data-uid='{lake_data['planted']}']")
    assert card.locator("dd.alt-text").text_content() == XSS

    # Search by uid finds that row and only it; search by word finds the rows with it.
    uid = sorted(_kept(expected))[0]
    _search(page, uid)
    assert page.get_attribute("#count", "data-count") == "1"
    assert page.locator("#grid .card").first.get_attribute("data-uid") == uid
    _search(page, "indicated")
    with_leak = [u for u, e in expected.items() if any("indicated" in s for s, _ in e["removed"])]
    assert page.get_attribute("#count", "data-count") == str(len(with_leak))
    _search(page, "")

    # Filters: by rejection reason, by removal reason.
    page.select_option("#reason", "too_short")
    page.wait_for_selector("body[data-state=ready]")
    too_short = [u for u, e in expected.items() if e["reject"] == "too_short"]
    assert page.get_attribute("#count", "data-count") == str(len(too_short))
    page.select_option("#reason", "instruction_vocabulary")
    page.wait_for_selector("body[data-state=ready]")
    echoed = {
        u for u, e in expected.items() if [LEAK_ECHO, "instruction_vocabulary"] in e["removed"]
    }
    uids = {
        page.locator("#grid .card").nth(i).get_attribute("data-uid") for i in range(len(echoed))
    }
    assert uids == echoed and page.locator("#grid .card").count() == len(echoed)
    assert page.evaluate("window.__kale_xss") is None


def test_diff_browser_in_chromium(lake_data, page, tmp_path):
    v1, v2 = lake_data["v1"], lake_data["v2"]
    out = tmp_path / "diff"
    assert _browse(lake_data, "--from", str(v1), "--to", str(v2), "--out", str(out)) == 0
    _open(page, out)
    shown = len(lake_data["added"]) + len(lake_data["changed"])
    assert page.get_attribute("#count", "data-count") == str(shown)
    page.select_option("#status", "changed")
    page.wait_for_selector("body[data-state=ready]")
    cards = page.locator("#grid .card")
    assert cards.count() == len(lake_data["changed"])
    first = cards.first
    assert first.locator("mark.old").all_text_contents() == ["tall", "dusk."]
    assert first.locator("mark.new").all_text_contents() == ["short", "old", "dawn."]
    page.screenshot(path=str(tmp_path / "diff.png"), full_page=True)
    assert (tmp_path / "diff.png").stat().st_size > 0


def test_paging_across_data_files_in_chromium(page, tmp_path):
    """450 rows: 3 data files of 200, pages of 24; page 9 (rows 192-215) needs two files."""
    from kale_spark.release import site

    rows = [
        {
            "uid": f"u{i:03d}",
            "stage": "stage1",
            "alt_text": f"alt {i}",
            "caption": f"caption number {i}",
            "removed_sentences": [],
            "model": "m",
            "prompt_id": "p",
        }
        for i in range(450)
    ]
    records = [site.release_record(r, [], None) for r in rows]
    meta = {"view": "release", "title": "t", "subtitle": "s", "figures": _FIGURES}
    out = site.write_site(tmp_path / "paged", meta, records, {})
    _open(page, out)
    assert page.locator("#grid .card").count() == 24
    for _ in range(8):
        page.click("#next")
        page.wait_for_selector("body[data-state=ready]")
    assert page.text_content("#page") == "page 9 of 19"
    uids = page.locator("#grid .card").evaluate_all("cs => cs.map(c => c.dataset.uid)")
    assert uids == [f"u{i:03d}" for i in range(192, 216)]
    _search(page, "number 449")
    assert page.locator("#grid .card").count() == 1
    assert page.text_content("#page") == "page 1 of 1"


_FIGURES = {"histogram": [1, 2], "bin_words": 10, "word_stats": [], "kale_mean_words": 67.26}
