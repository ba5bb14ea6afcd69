"""The stage-2 student: the LLaVA-style model, its training encoding, its captioner,
and the training loop with its data stream and checkpoints.

    model.py        compose / build / load the student, train parts, loss
    encoding.py     training examples: the captioner's prompt, then the caption
    captioner.py    ``StudentCaptioner`` and the student's ``ModelSpec``
    data.py         the Parquet snapshot streamed to each rank
    checkpoints.py  checkpoints with each rank's read position
    loop.py         the training loop run by each TorchDistributor rank

No Spark here (the train-student stage is the Spark side). May import: the core
modules and ``models``. Importing it loads neither torch nor transformers.
"""
