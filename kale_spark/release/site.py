"""The files of a static release browser, from plain Python values (no Spark).

    write_site(out, meta, records, thumbs)     # index.html, assets/, data/, thumbs/

A site is one `index.html` (the same for a release and a diff; `meta["view"]` picks
the view), `assets/browser.js` + `assets/browser.css`, and its data as JavaScript
files that assign JSON to `window.KALE_BROWSER`:

    data/meta.js         what the site shows: release, counts, the card's figures, facets
    data/index.js        the search index: [chunk, offset, uid, stage, status, tags, text]
    data/rows-0000.js    the rows themselves, CHUNK_ROWS per file, loaded when a page
                         of the grid needs them

Data travels as <script> files, not fetched JSON, because browsers refuse fetch() of
file:// URLs: the site must open from disk. The JSON is written with every non-ASCII
character and every `<` escaped, so no text in it can close a script element or
break a JavaScript string; the page script puts it into the DOM with textContent only.
The output is a pure function of the inputs (sorted keys, no clock), so rewriting the
browser of a release gives the same bytes.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from kale_spark.lake.files import atomic_dir

__all__ = [
    "ASSETS",
    "CHUNK_ROWS",
    "NOTHING_REMOVED",
    "diff_record",
    "facets",
    "index_entry",
    "js_assign",
    "make_thumbnail",
    "release_record",
    "thumb_path",
    "word_diff",
    "write_site",
]

# Rows per data/rows-NNNN.js file: a grid page loads one or two of them.
CHUNK_ROWS = 200
ASSETS = ("index.html", "browser.js", "browser.css")
# The reason tag of a kept row the filter removed nothing from.
NOTHING_REMOVED = "nothing removed"
# The quality columns a row card shows, in this order.
QUALITY_COLUMNS = ("word_count", "knowledge_retention", "novel_share", "novel_share_basis")
# Caption fields a diff compares (and shows, old beside new).
DIFF_FIELDS = ("caption", "dense_caption", "stage", "model", "prompt_id", "word_count")
_SAFE_NAME = re.compile(r"[0-9A-Za-z_-]{1,64}")


def js_assign(name: str, value: Any) -> str:
    """`window.KALE_BROWSER.<name> = <value as JSON>;` - safe to load as a script: the
    JSON is ASCII (so U+2028 and friends are escaped) and has no `<`."""
    if not name.isidentifier():
        raise ValueError(f"not an identifier: {name!r}")
    text = json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e")
    return (
        "window.KALE_BROWSER = window.KALE_BROWSER || {};\n"
        f"window.KALE_BROWSER.{name} = {text};\n"
    )


def thumb_path(uid: str) -> str:
    """The relative path of a uid's thumbnail: the uid itself when it is a plain name
    (DataComp uids are 32 hex digits), else a hash of it, never a path to elsewhere."""
    name = uid if _SAFE_NAME.fullmatch(uid) else hashlib.sha256(uid.encode()).hexdigest()[:32]
    return f"thumbs/{name}.jpg"


def make_thumbnail(data: bytes | None, px: int) -> bytes | None:
    """A JPEG of at most `px` x `px` pixels of the image `data`; None when it does not
    decode (a thumbnail is a convenience: a broken one never fails the site)."""
    if not data:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (px, px))  # JPEG: decode at a reduced DCT scale
            small = img.convert("RGB")
            small.thumbnail((px, px), Image.Resampling.BILINEAR)
            buf = io.BytesIO()
            small.save(buf, format="JPEG", quality=75)
            return buf.getvalue()
    except Exception:  # any decoder error: no thumbnail for this row
        return None


def _num(value: Any) -> Any:
    return round(float(value), 4) if isinstance(value, float) else value


def release_record(row: Mapping[str, Any], reasons: Sequence[str] | None, thumb: str | None):
    """A grid row of the release view, from a `kale` row (status `kept`) or a rejected
    `filtered_captions` row (status `rejected`): texts, removed sentences with their
    reasons (None where the filter's record is missing), quality, lineage, thumbnail."""
    removed = list(row.get("removed_sentences") or [])
    why = list(reasons) if reasons is not None and len(reasons) == len(removed) else None
    rejected = row.get("reject_reason")
    return {
        "uid": row["uid"],
        "status": "rejected" if rejected else "kept",
        "reject_reason": rejected,
        "stage": row["stage"],
        "url": row.get("url"),
        "alt_text": row.get("alt_text"),
        "dense_caption": row.get("dense_caption"),
        "caption": row.get("caption"),
        "caption_raw": row.get("caption_raw") if rejected else None,
        "removed": [[s, why[i] if why else None] for i, s in enumerate(removed)],
        "quality": [[c, _num(row.get(c))] for c in QUALITY_COLUMNS],
        "model": row.get("model"),
        "prompt_id": row.get("prompt_id"),
        "thumb": thumb,
    }


def tags(record: Mapping[str, Any]) -> list[str]:
    """The reasons a row can be filtered by: why it was rejected, why sentences were
    removed from it, or NOTHING_REMOVED."""
    out = [record["reject_reason"]] if record.get("reject_reason") else []
    out += sorted({r or "unknown" for _, r in record.get("removed", [])})
    return out or [NOTHING_REMOVED]


def _search_text(record: Mapping[str, Any]) -> str:
    texts = [record.get(k) for k in ("alt_text", "caption", "dense_caption", "caption_raw")]
    texts += [s for s, _ in record.get("removed", [])]
    for side in ("old", "new"):
        if record.get(side):
            texts += [record[side].get("caption"), record[side].get("dense_caption")]
    return " ".join(" ".join(t.split()) for t in texts if t).lower()


def index_entry(i: int, record: Mapping[str, Any]) -> list:
    """Row i's search entry: [chunk, offset, uid, stage, status, tags, text]."""
    status = record.get("change") or record["status"]
    stage = record.get("stage") or ""
    return [
        i // CHUNK_ROWS,
        i % CHUNK_ROWS,
        record["uid"],
        stage,
        status,
        tags(record),
        _search_text(record),
    ]


def facets(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Rows shown per stage, status (or change) and reason tag: the filters' options."""
    entries = [index_entry(i, r) for i, r in enumerate(records)]
    return {
        "stage": dict(sorted(Counter(e[3] for e in entries if e[3]).items())),
        "status": dict(sorted(Counter(e[4] for e in entries).items())),
        "reason": dict(sorted(Counter(t for e in entries for t in e[5]).items())),
    }


def word_diff(old: str | None, new: str | None) -> tuple[list[list], list[list]]:
    """Two texts as runs of words marked same (0) or different (1): the words `old`
    lost and the words `new` gained, by difflib's longest matching blocks."""
    a, b = (old or "").split(), (new or "").split()
    a_marks, b_marks = [1] * len(a), [1] * len(b)
    for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            a_marks[block.a + k] = b_marks[block.b + k] = 0
    return _runs(a, a_marks), _runs(b, b_marks)


def _runs(words: list[str], marks: list[int]) -> list[list]:
    runs: list[list] = []
    for word, mark in zip(words, marks, strict=True):
        if runs and runs[-1][1] == mark:
            runs[-1][0] += " " + word
        else:
            runs.append([word, mark])
    return runs


def diff_record(uid: str, change: str, old: Mapping | None, new: Mapping | None, thumb: str | None):
    """A row of the diff view: the uid, added / removed / changed, both sides' captions,
    which columns differ and, for a changed caption, its words marked on each side."""
    sides = {
        name: None if r is None else {k: _num(r.get(k)) for k in DIFF_FIELDS}
        for name, r in (("old", old), ("new", new))
    }
    differs = []
    if old is not None and new is not None:
        differs = sorted(k for k in old if k != "uid" and old.get(k) != new.get(k))
    record = {
        "uid": uid,
        "change": change,
        "stage": (new or old or {}).get("stage"),
        "alt_text": (new or old or {}).get("alt_text"),
        "old": sides["old"],
        "new": sides["new"],
        "columns_changed": differs,
        "caption_diff": None,
        "thumb": thumb,
        "status": change,
    }
    if old is not None and new is not None and old.get("caption") != new.get("caption"):
        record["caption_diff"] = list(word_diff(old.get("caption"), new.get("caption")))
    return record


def _asset_text(name: str) -> str:
    return resources.files("kale_spark.release").joinpath("browser_assets", name).read_text()


def _is_site(folder: Path) -> bool:
    return (folder / "index.html").is_file() and (folder / "data" / "meta.js").is_file()


def _write_data(tmp: Path, meta: Mapping, records: Sequence[Mapping]) -> None:
    data = tmp / "data"
    data.mkdir()
    n_chunks = -(-len(records) // CHUNK_ROWS)
    full_meta = {**meta, "rows_shown": len(records), "chunks": n_chunks, "facets": facets(records)}
    (data / "meta.js").write_text(js_assign("meta", full_meta))
    index = [index_entry(i, r) for i, r in enumerate(records)]
    (data / "index.js").write_text(js_assign("index", index))
    for c in range(n_chunks):
        rows = list(records[c * CHUNK_ROWS : (c + 1) * CHUNK_ROWS])
        (data / f"rows-{c:04d}.js").write_text(js_assign(f"chunk{c}", rows))


def write_site(
    out: str | os.PathLike,
    meta: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    thumbs: Mapping[str, bytes],
) -> Path:
    """Write a browser site into `out` (replacing an earlier site there); its path.
    `thumbs` maps each record's `thumb` path to JPEG bytes. A folder that holds
    something other than a site is refused, never emptied."""
    final = Path(out)
    if final.exists() and any(final.iterdir()) and not _is_site(final):
        raise FileExistsError(f"{final} is not empty and holds no kale browser; not replacing it")
    with atomic_dir(final) as tmp:
        (tmp / "assets").mkdir()
        (tmp / "thumbs").mkdir()
        (tmp / "index.html").write_text(_asset_text("index.html"))
        for name in ("browser.js", "browser.css"):
            (tmp / "assets" / name).write_text(_asset_text(name))
        for path, data in sorted(thumbs.items()):
            if not re.fullmatch(r"thumbs/[0-9A-Za-z_-]{1,64}\.jpg", path):
                raise ValueError(f"not a thumbnail path: {path!r}")
            (tmp / path).write_bytes(data)
        _write_data(tmp, meta, records)
    return final
