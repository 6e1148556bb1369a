"""Reading, splitting and caching dermoscopy datasets (HAM10000 and friends)."""

# Each reader module registers its format on import; ``open_index(fmt="auto")`` tries them in this order.
from dermsynth.data import dermamnist, ham10000, folder  # isort: skip
from dermsynth.data.index import CLASSES, READERS, DatasetIndex, Record, open_index
from dermsynth.errors import DataError

FORMATS = ("auto", *READERS)
"""The data formats a command takes: auto (detected), or a reader's name."""

__all__ = ["CLASSES", "FORMATS", "READERS", "DataError", "DatasetIndex", "Record", "open_index", "dermamnist",
           "ham10000", "folder"]
