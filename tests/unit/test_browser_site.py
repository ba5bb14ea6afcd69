"""The release browser's files from plain values (kale_spark/release/site.py): no Spark."""

from __future__ import annotations

import io
import json
import re

import pytest
from PIL import Image

from kale_spark.release import site


def _value(js: str, name: str):
    prefix = f"window.KALE_BROWSER.{name} = "
    line = next(ln for ln in js.splitlines() if ln.startswith(prefix))
    return json.loads(line[len(prefix) :].rstrip(";"))


def test_js_assign_cannot_close_a_script_or_a_string():
    text = 'a</script><script>alert(1)</script> "q" \u2028 line \u2029 é'
    js = site.js_assign("meta", {"t": text})
    assert "<" not in js and ">" not in js
    assert "\u2028" not in js and "\u2029" not in js and "é" not in js
    assert js.isascii()
    assert _value(js, "meta") == {"t": text}  # the JSON still decodes to the same text


def test_js_assign_needs_an_identifier():
    with pytest.raises(ValueError):
        site.js_assign("a; alert(1)", 1)


def test_thumb_path_stays_inside_thumbs():
    assert site.thumb_path("0123456789abcdef0123456789abcdef") == (
        "thumbs/0123456789abcdef0123456789abcdef.jpg"
    )
    for uid in ("../../etc/passwd", "a/b", "x y", ""):
        path = site.thumb_path(uid)
        name = path.removeprefix("thumbs/").removesuffix(".jpg")
        assert len(name) == 32 and all(c in "0123456789abcdef" for c in name), uid


def test_word_diff_marks_the_words_that_differ():
    old, new = site.word_diff(
        "a tall red tower at dusk", "a short red tower in the old city at dusk"
    )
    assert old == [["a", 0], ["tall", 1], ["red tower at dusk", 0]]
    assert [w for w, m in old if m] == ["tall"]
    assert [w for w, m in new if m] == ["short", "in the old city"]
    assert " ".join(w for w, _ in new) == "a short red tower in the old city at dusk"


def test_word_diff_of_missing_text():
    assert site.word_diff(None, "new words") == ([], [["new words", 1]])
    assert site.word_diff("same", "same") == ([["same", 0]], [["same", 0]])


def test_make_thumbnail_is_a_small_jpeg():
    buf = io.BytesIO()
    Image.new("RGB", (490, 300), (10, 200, 30)).save(buf, "PNG")
    thumb = site.make_thumbnail(buf.getvalue(), 64)
    with Image.open(io.BytesIO(thumb)) as img:
        assert img.format == "JPEG" and img.size == (64, 39)
    assert site.make_thumbnail(b"not an image", 64) is None
    assert site.make_thumbnail(None, 64) is None


ROW = {
    "uid": "u1",
    "stage": "stage1",
    "url": "https://example.com/a.jpg",
    "alt_text": "Eiffel Tower, 1889",
    "dense_caption": "a tall iron tower",
    "caption": "The Eiffel Tower in 1889.",
    "removed_sentences": ["As indicated in Sentence 1, it is tall."],
    "word_count": 5,
    "knowledge_retention": 1.0,
    "novel_share": 0.123456,
    "novel_share_basis": "alt_text+dense_caption",
    "model": "tiny:lm",
    "prompt_id": "fuse_capsfusion_v1",
}


def test_release_record_pairs_removed_sentences_with_reasons():
    record = site.release_record(ROW, ["prompt_part_reference"], "thumbs/u1.jpg")
    assert record["status"] == "kept" and record["reject_reason"] is None
    assert record["removed"] == [
        ["As indicated in Sentence 1, it is tall.", "prompt_part_reference"]
    ]
    assert dict(record["quality"]) == {
        "word_count": 5,
        "knowledge_retention": 1.0,
        "novel_share": 0.1235,
        "novel_share_basis": "alt_text+dense_caption",
    }
    assert site.tags(record) == ["prompt_part_reference"]
    # reasons missing (no filter record): the sentences stay, their reason is unknown
    unknown = site.release_record(ROW, None, None)
    assert unknown["removed"] == [["As indicated in Sentence 1, it is tall.", None]]
    assert site.tags(unknown) == ["unknown"]


def test_rejected_record_and_tags():
    row = {**ROW, "reject_reason": "too_short", "caption_raw": "raw", "removed_sentences": []}
    record = site.release_record(row, [], None)
    assert record["status"] == "rejected" and record["caption_raw"] == "raw"
    assert site.tags(record) == ["too_short"]
    kept = site.release_record({**ROW, "removed_sentences": []}, [], None)
    assert site.tags(kept) == [site.NOTHING_REMOVED]


def test_index_entry_and_facets():
    records = [site.release_record(ROW, ["prompt_part_reference"], None)] * 3
    records.append(site.release_record({**ROW, "uid": "u2", "stage": "stage2"}, [], None))
    entry = site.index_entry(201, records[0])
    assert entry[:6] == [1, 1, "u1", "stage1", "kept", ["prompt_part_reference"]]
    assert "eiffel tower, 1889" in entry[6] and "as indicated in sentence 1" in entry[6]
    assert site.facets(records) == {
        "stage": {"stage1": 3, "stage2": 1},
        "status": {"kept": 4},
        "reason": {"prompt_part_reference": 3, "unknown": 1},
    }


def test_diff_record_of_a_changed_caption():
    new = {**ROW, "caption": "The big Eiffel Tower in 1889.", "word_count": 6}
    record = site.diff_record("u1", "changed", ROW, new, None)
    assert record["columns_changed"] == ["caption", "word_count"]
    assert record["old"]["caption"] == ROW["caption"] and record["new"]["word_count"] == 6
    old_runs, new_runs = record["caption_diff"]
    assert [w for w, m in new_runs if m] == ["big"] and not any(m for _, m in old_runs)
    added = site.diff_record("u2", "added", None, new, None)
    assert added["old"] is None and added["caption_diff"] is None and added["status"] == "added"


def test_write_site_layout_chunks_and_rewrite(tmp_path):
    records = [site.release_record({**ROW, "uid": f"u{i}"}, ["r"], None) for i in range(450)]
    thumbs = {"thumbs/u1.jpg": b"\xff\xd8jpeg"}
    out = site.write_site(tmp_path / "site", {"view": "release"}, records, thumbs)
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == [
        "assets/browser.css",
        "assets/browser.js",
        "data/index.js",
        "data/meta.js",
        "data/rows-0000.js",
        "data/rows-0001.js",
        "data/rows-0002.js",
        "index.html",
        "thumbs/u1.jpg",
    ]
    meta = _value((out / "data" / "meta.js").read_text(), "meta")
    assert meta["rows_shown"] == 450 and meta["chunks"] == 3
    assert len(_value((out / "data" / "rows-0002.js").read_text(), "chunk2")) == 50
    first = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    site.write_site(out, {"view": "release"}, records, thumbs)  # a site is replaced ...
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == first  # ... byte for byte


def test_write_site_refuses_foreign_folders_and_paths(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        site.write_site(tmp_path, {"view": "release"}, [], {})
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError):
        site.write_site(tmp_path / "s", {}, [], {"../escape.jpg": b"x"})
    assert not (tmp_path / "escape.jpg").exists() and not (tmp_path / "s").exists()


def test_page_has_no_html_sink_and_no_network():
    """The script builds the DOM with textContent only; the page loads nothing remote."""
    from importlib import resources

    assets = resources.files("kale_spark.release").joinpath("browser_assets")
    js = re.sub(r"/\*.*?\*/", "", assets.joinpath("browser.js").read_text(), flags=re.S)
    html = assets.joinpath("index.html").read_text()
    css = assets.joinpath("browser.css").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js, sink
    for text in (js, html, css):
        assert "http://" not in text and "https://" not in text
        assert "fetch(" not in text and "XMLHttpRequest" not in text and "@import" not in text
    assert "script-src 'self'" in html and "connect-src 'none'" in html
