"""Fetching images: bytes from http(s)/file:// or img2dataset shards to ``images`` rows.

    status.py   ``Status`` of an ``images`` row, the one retry rule and its Spark twin
    client.py   the HTTP client: network policy, deadlines, byte caps, redirects, opt-out
    decode.py   decode, EXIF-orient, guard and resize image bytes (pure)
    rows.py     a partition of samples → ``images`` rows (threads, decode gate)

Pure Python (no Spark at import time); the fetch stage (``stages/fetch.py``) is the
Spark side. May import: the core modules and ``sources`` (shard readers).
"""
