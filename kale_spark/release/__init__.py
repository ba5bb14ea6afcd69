"""Release: what is made for people from a published version of the gold table `kale`.

This package owns the export, the dataset card and its charts, and the static release
browser: `kale browse --version V --out DIR` (one
release: a bounded sample of rows with thumbnails, the card's figures) and
`kale browse --from A --to B --out DIR` (what changed between two versions), written
as plain HTML, CSS, a small script and JSON-in-JS data files that open from disk or a
bucket with no server and no network.

    browser.py         selects the data in Spark (sample by uid hash, reasons,
                       thumbnails, the diff) and hands it to site.py
    site.py            pure: row records, word diffs, thumbnails, the files of a site
    browser_assets/    the page templates, the script and the style sheet

    export.py          Parquet shards + WebDataset tars of a release
    card.py            the dataset card (README.md of a release)
    charts.py          the card's figures (SVG)
    webdataset.py      the WebDataset tar writer
    stats.py           caption statistics (words, lengths) of a release
    report.py          the lake summary printed by `kale summary` / `make demo`

May import: the core modules, ``lake`` and ``curation``; stages and the CLI import it.
"""
