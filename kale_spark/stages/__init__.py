"""One module per pipeline stage; each exposes `run(spark, cfg) -> StageRun`.

A stage reads its input tables, calls the pure packages (``fetch``, ``models`` through
``spark.udf``, ``student``, ``curation``, ``release``) and writes through ``lake``.
``model_stage.py`` and ``chunks.py`` are the machinery the three model stages share.
May import every package but ``cli``; only ``cli``, jobs/ and notebooks/ import it.
"""
