"""A DataComp-format sample: metadata parquet plus the drawn images it points to.

The demo and the tests run on this. Alt-texts read like web alt-text and carry the
real-world knowledge KALE wants to keep (landmarks, brands, names, dates, product
codes). With `bad_fraction > 0` a share of rows is broken the ways real metadata
breaks; each broken row's defect is recorded in `manifest.json` so tests can check
that the pipeline accounts for every one.

Layout written under `out`:
    metadata/part-00000.parquet ...   DataComp columns, one file per `shard_rows` rows
    metadata/part-types.parquet       rows whose columns have the wrong types (if any)
    images/<uid>.<jpg|png|webp>       the images, file:// URLs unless base_url is set
    manifest.json                     per-uid defect labels and counts
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

LANDMARKS = [
    ("Eiffel Tower", "Paris"),
    ("Golden Gate Bridge", "San Francisco"),
    ("Sydney Opera House", "Sydney"),
    ("Colosseum", "Rome"),
    ("Brandenburg Gate", "Berlin"),
    ("Tower Bridge", "London"),
    ("Fushimi Inari Shrine", "Kyoto"),
    ("Space Needle", "Seattle"),
    ("Sagrada Familia", "Barcelona"),
    ("Charles Bridge", "Prague"),
]
PRODUCTS = [
    ("Nike", "Air Max 90 running shoes", "CT1685-100"),
    ("Canon", "EOS R6 mirrorless camera", "4082C002"),
    ("LEGO", "Technic Porsche 911 set", "42096"),
    ("Sony", "WH-1000XM5 headphones", "WH1000XM5/B"),
    ("Le Creuset", "cast iron Dutch oven", "LS2501-2667"),
    ("Patagonia", "Nano Puff jacket", "84212"),
    ("Fender", "Stratocaster electric guitar", "0144502500"),
    ("KitchenAid", "Artisan stand mixer", "KSM150PSER"),
]
PEOPLE = [
    "Maria Hernandez",
    "James O'Connor",
    "Aiko Tanaka",
    "Dr. Samuel Okafor",
    "Elena Petrova",
    "Rahul Mehta",
    "Sofia Lindqvist",
    "Chen Wei",
]
EVENTS = ["Berlin Marathon", "Cannes Film Festival", "TEDx Amsterdam", "SXSW", "Wimbledon"]
MONTHS = ["January", "March", "April", "June", "July", "September", "October", "December"]
ADJECTIVES = ["beautiful", "vintage", "rainy", "crowded", "quiet", "golden", "foggy", "snowy"]


def _date(rng: random.Random) -> str:
    year = rng.randint(1998, 2024)
    style = rng.randrange(3)
    if style == 0:
        return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {year}"
    if style == 1:
        return str(year)
    return f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def alt_text(rng: random.Random) -> str:
    """One web-style alt-text carrying real-world knowledge."""
    kind = rng.randrange(6)
    if kind == 0:
        landmark, city = rng.choice(LANDMARKS)
        return f"{landmark} at sunset, {city}, {_date(rng)}"
    if kind == 1:
        brand, product, code = rng.choice(PRODUCTS)
        return f"{brand} {product} - model {code} | Free shipping"
    if kind == 2:
        person = rng.choice(PEOPLE)
        event = rng.choice(EVENTS)
        return f"{person} speaks at the {event} {rng.randint(2010, 2024)}"
    if kind == 3:
        landmark, city = rng.choice(LANDMARKS)
        return f"Stock photo: {rng.choice(ADJECTIVES)} street near the {landmark} in {city}"
    if kind == 4:
        brand, product, code = rng.choice(PRODUCTS)
        return f"{product.capitalize()} by {brand} (SKU {code}), photographed {_date(rng)}"
    return f"IMG_{rng.randint(1000, 9999)}.JPG"


def draw_scene(rng: random.Random, width: int, height: int):
    """A drawn outdoor scene: sky gradient, sun, ground, buildings with windows, trees."""
    import numpy as np
    from PIL import Image, ImageDraw

    top = np.array([rng.randint(20, 120), rng.randint(60, 160), rng.randint(150, 255)], float)
    bottom = np.array([rng.randint(180, 255), rng.randint(150, 230), rng.randint(120, 220)], float)
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    sky = (top * (1 - t) + bottom * t).astype(np.uint8)
    img = Image.fromarray(np.repeat(sky, width, axis=1), "RGB")
    draw = ImageDraw.Draw(img)
    horizon = int(height * rng.uniform(0.55, 0.8))
    r = max(4, int(min(width, height) * rng.uniform(0.04, 0.1)))
    sx, sy = rng.randint(r, width - r), rng.randint(r, max(r + 1, horizon // 2))
    draw.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(255, rng.randint(200, 240), 80))
    ground = (rng.randint(30, 90), rng.randint(90, 150), rng.randint(30, 80))
    draw.rectangle([0, horizon, width, height], fill=ground)
    x = 0
    while x < width:
        bw = max(4, int(width * rng.uniform(0.05, 0.15)))
        bh = int(height * rng.uniform(0.15, 0.5))
        shade = rng.randint(60, 180)
        draw.rectangle([x, horizon - bh, x + bw, horizon], fill=(shade, shade, shade + 20))
        step = max(3, bw // 4)
        for wx in range(x + step // 2, x + bw - step // 2, step):
            for wy in range(horizon - bh + step // 2, horizon - step, step):
                if rng.random() < 0.6:
                    draw.rectangle([wx, wy, wx + step // 3, wy + step // 3], fill=(250, 230, 140))
        x += bw + rng.randint(0, max(1, width // 20))
    for _ in range(rng.randint(0, 4)):
        tx = rng.randint(0, width)
        th = int(height * rng.uniform(0.08, 0.2))
        draw.polygon(
            [(tx, horizon - th), (tx - th // 3, horizon), (tx + th // 3, horizon)],
            fill=(20, rng.randint(90, 140), 40),
        )
    return img


def _encode(img, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        img.save(buf, format="JPEG", quality=88)
    elif fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.save(buf, format="WEBP", quality=80)
    return buf.getvalue()


# Defects of metadata rows (ingest must quarantine these) ...
INGEST_DEFECTS = (
    "null_url",
    "malformed_url",
    "bad_uid",
    "duplicate_uid",
    "empty_text",
    "huge_text",
    "wrong_types",
)
# ... and of rows whose metadata is fine but whose image is not (fetch reports these).
FETCH_DEFECTS = ("missing_file", "not_an_image", "truncated_image")
# The round-robin order: fetch and ingest kinds interleaved, so that any 6 defective
# rows include every fetch kind and any 10 include every kind.
DEFECT_ORDER = (
    "missing_file",
    "null_url",
    "not_an_image",
    "malformed_url",
    "truncated_image",
    *(d for d in INGEST_DEFECTS if d not in ("null_url", "malformed_url")),
)


@dataclass
class SampleResult:
    out: Path
    metadata_dir: Path
    rows: int
    defects: dict[str, str] = field(default_factory=dict)  # row key -> defect
    files: list[Path] = field(default_factory=list)


def generate_sample(
    out: str | Path,
    rows: int,
    *,
    bad_fraction: float = 0.0,
    seed: int = 0,
    base_url: str | None = None,
    max_side: int = 2400,
    shard_rows: int = 1000,
) -> SampleResult:
    """Write `rows` DataComp-format metadata rows (and their images) under `out`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    out = Path(out).resolve()
    img_dir = out / "images"
    meta_dir = out / "metadata"
    img_dir.mkdir(parents=True, exist_ok=True)
    meta_dir.mkdir(parents=True, exist_ok=True)
    for old in meta_dir.glob("*.parquet"):
        old.unlink()

    n_bad = int(round(rows * bad_fraction))
    bad_kinds = [DEFECT_ORDER[i % len(DEFECT_ORDER)] for i in range(n_bad)]
    rng.shuffle(bad_kinds)
    bad_at = dict(zip(rng.sample(range(rows), n_bad), bad_kinds, strict=False))

    def url_for(name: str) -> str:
        if base_url:
            return f"{base_url.rstrip('/')}/images/{name}"
        return (img_dir / name).as_uri()

    good_rows: list[dict] = []
    typed_rows: list[dict] = []
    defects: dict[str, str] = {}
    clean_uids: list[str] = []  # rows with no defect at all: safe to duplicate
    for i in range(rows):
        defect = bad_at.get(i)
        if defect == "duplicate_uid" and not clean_uids:
            defect = None  # nothing to duplicate yet
        uid = f"{rng.getrandbits(128):032x}"
        mid = max(64, min(900, max_side // 2))
        width = rng.choice([rng.randint(64, mid), rng.randint(mid, max_side)])
        height = max(64, int(width * rng.uniform(0.5, 1.5)))
        height = min(height, max_side)
        fmt = rng.choices(["jpg", "png", "webp"], weights=[6, 2, 2])[0]
        name = f"{uid}.{fmt}"
        data = b""
        if defect not in ("null_url", "malformed_url", "missing_file"):
            img = draw_scene(rng, width, height)
            data = _encode(img, fmt)
            if defect == "not_an_image":
                name = f"{uid}.jpg"
                data = b"<!doctype html><html><body><h1>404 Not Found</h1></body></html>"
            elif defect == "truncated_image":
                data = data[: max(64, len(data) // 5)]
            (img_dir / name).write_bytes(data)
        row = {
            "uid": uid,
            "url": url_for(name),
            "text": alt_text(rng),
            "original_width": width,
            "original_height": height,
            "sha256": hashlib.sha256(data).hexdigest() if data else None,
            "clip_b32_similarity_score": round(rng.uniform(0.2, 0.4), 4),
            "clip_l14_similarity_score": round(rng.uniform(0.2, 0.4), 4),
            "face_bboxes": [[0.1, 0.1, 0.3, 0.4]] if rng.random() < 0.2 else [],
        }
        key = uid
        if defect == "null_url":
            row["url"] = None
        elif defect == "malformed_url":
            row["url"] = rng.choice(
                ["htp//broken-link", "not a url", "http://", "ftp://x.org/a.jpg"]
            )
        elif defect == "bad_uid":
            row["uid"] = rng.choice([f"XYZ-{i}", uid[:20], "g" * 28 + f"{i:04d}"])
            key = row["uid"]
        elif defect == "duplicate_uid":
            row["uid"] = clean_uids[rng.randrange(len(clean_uids))]
            key = f"{row['uid']}#dup{i}"
        elif defect == "empty_text":
            row["text"] = rng.choice(["", "   "])
        elif defect == "huge_text":
            row["text"] = "buy cheap " * 6000
        if defect:
            defects[key] = defect
        else:
            clean_uids.append(uid)
        if defect == "wrong_types":
            row["original_width"] = rng.choice(["wide", "n/a"])
            row["clip_b32_similarity_score"] = "high"
            typed_rows.append(row)
        else:
            good_rows.append(row)

    files = []
    table_schema = pa.schema(
        [
            ("uid", pa.string()),
            ("url", pa.string()),
            ("text", pa.string()),
            ("original_width", pa.int64()),
            ("original_height", pa.int64()),
            ("sha256", pa.string()),
            ("clip_b32_similarity_score", pa.float64()),
            ("clip_l14_similarity_score", pa.float64()),
            ("face_bboxes", pa.list_(pa.list_(pa.float64()))),
        ]
    )
    for shard, start in enumerate(range(0, len(good_rows), shard_rows)):
        path = meta_dir / f"part-{shard:05d}.parquet"
        pq.write_table(
            pa.Table.from_pylist(good_rows[start : start + shard_rows], table_schema), path
        )
        files.append(path)
    if typed_rows:
        # DataComp shards are typed; a shard written by another tool with text columns is
        # the realistic "wrong types" case.
        typed_rows = [
            {k: v if k == "face_bboxes" or v is None else str(v) for k, v in r.items()}
            for r in typed_rows
        ]
        text_schema = pa.schema(
            [(f.name, pa.string() if f.name != "face_bboxes" else f.type) for f in table_schema]
        )
        path = meta_dir / "part-types.parquet"
        pq.write_table(pa.Table.from_pylist(typed_rows, text_schema), path)
        files.append(path)

    manifest = {
        "rows": rows,
        "seed": seed,
        "bad_fraction": bad_fraction,
        "defects": defects,
        "ingest_defects": sum(1 for d in defects.values() if d in INGEST_DEFECTS),
        "fetch_defects": sum(1 for d in defects.values() if d in FETCH_DEFECTS),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    log.info("sample: %d rows (%d with defects) in %s", rows, len(defects), out)
    return SampleResult(out=out, metadata_dir=meta_dir, rows=rows, defects=defects, files=files)
