"""dermsynth: class-conditional GANs for dermoscopy images, evaluated honestly.

Data flows one way: files on disk -> dataset index and split -> cached uint8
arrays -> training -> checkpoints -> generated images -> metrics -> report.

The public Python API (see the README's "Use it from Python"):

- :func:`load_generator` -> a :class:`Generator` with ``sample(dx, n, seed)`` (uint8 images, the same as
  ``dermsynth generate``) and ``sample_tensor`` (float, [-1, 1]);
- :class:`SyntheticDataset`: a torch Dataset of synthetic images, drawn on the fly or read from an export;
- :data:`CLASSES`: the class names in label order; ``__version__``.

Everything else is internal and may change.
"""

from dermsynth._version import __version__
from dermsynth.api import Generator, SyntheticDataset, load_generator
from dermsynth.data.index import CLASSES

__all__ = ["CLASSES", "Generator", "SyntheticDataset", "__version__", "load_generator"]
