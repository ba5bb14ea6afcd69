"""Release: what is made for people from a published version of the gold table `kale`.

This package owns the static release browser: `kale browse --version V --out DIR` (one
release: a bounded sample of rows with thumbnails, the card's figures) and
`kale browse --from A --to B --out DIR` (what changed between two versions), written
as plain HTML, CSS, a small script and JSON-in-JS data files that open from disk or a
bucket with no server and no network.

    browser.py         selects the data in Spark (sample by uid hash, reasons,
                       thumbnails, the diff) and hands it to site.py
    site.py            pure: row records, word diffs, thumbnails, the files of a site
    browser_assets/    the page templates, the script and the style sheet

The export, the dataset card and its figures (kale_spark/export.py, card.py,
figures.py) belong to this room too and stay where they are until the layout moves
them; the browser reuses the card's figures rather than computing its own.
"""
