"""kale-spark: BLIP3-KALE style knowledge-augmented captions on Spark + Delta Lake."""

__version__ = "0.1.0"
