"""One module per pipeline stage; each exposes `run(spark, cfg) -> StageRun`."""
