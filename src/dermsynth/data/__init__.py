"""Reading, splitting and caching dermoscopy datasets (HAM10000 and friends)."""

from dermsynth.data.index import CLASSES, DataError, DatasetIndex, Record, open_index

__all__ = ["CLASSES", "DataError", "DatasetIndex", "Record", "open_index"]
