"""Where rows come from: DataComp metadata, img2dataset shards, the sample generator."""
