"""Where rows come from: DataComp metadata, img2dataset/WebDataset shards, the sample
generator.

    datacomp.py     reading DataComp metadata parquet (ingest)
    webdataset.py   img2dataset shards: entries by uid, reading one entry's bytes
    sample.py       the generated DataComp-format sample (`kale sample`, `make demo`)

May import the core modules only; ``fetch`` and the stages import it.
"""
