"""The model layer: specs, loading (hub, local or tiny), captioner, fusion LM, cache.

Pure Python + torch/transformers, no Spark. Importing this package imports
neither torch nor transformers; they load when a model does. May import: the core
modules (prompts, reasons), ``lake.files``, and (lazily, for the engine kind ``student``)
``student.captioner``; ``student`` and ``spark.udf`` build on it.
"""

from kale_spark.models.batching import Generated, run_with_oom_split
from kale_spark.models.cache import get_or_load, load_count
from kale_spark.models.captioner import Captioner
from kale_spark.models.device import pick_device, set_torch_threads
from kale_spark.models.fusion import FusionRewriter, postprocess
from kale_spark.models.loading import load_lm, load_vlm, resolve_model_path
from kale_spark.models.spec import TINY_REVISION, GenerationParams, ModelSpec

__all__ = [
    "TINY_REVISION",
    "Captioner",
    "FusionRewriter",
    "GenerationParams",
    "Generated",
    "ModelSpec",
    "get_or_load",
    "load_count",
    "load_lm",
    "load_vlm",
    "pick_device",
    "postprocess",
    "resolve_model_path",
    "run_with_oom_split",
    "set_torch_threads",
]
