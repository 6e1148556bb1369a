"""Reading, splitting and caching dermoscopy datasets (HAM10000 and friends)."""

# Each reader module registers its format on import; ``open_index(fmt="auto")`` tries them in this order.
from dermsynth.data import dermamnist, ham10000, folder  # isort: skip
from dermsynth.data.index import CLASSES, DataError, DatasetIndex, Record, open_index

__all__ = ["CLASSES", "DataError", "DatasetIndex", "Record", "open_index", "dermamnist", "ham10000", "folder"]
