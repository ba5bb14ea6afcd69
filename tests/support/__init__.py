"""Test-only builders: a local HTTP server, img2dataset shards, tiny model families."""
