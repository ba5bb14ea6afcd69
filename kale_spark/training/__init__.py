"""Training the stage-2 student: data streaming, checkpoints, the loop (no Spark here)."""
