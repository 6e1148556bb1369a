"""dermsynth: class-conditional GANs for dermoscopy images, evaluated honestly.

Data flows one way: files on disk -> dataset index and split -> cached uint8
arrays -> training -> checkpoints -> generated images -> metrics -> report.
"""

__version__ = "0.1.0"
