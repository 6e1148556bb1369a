"""The names of a study's stages, in the order they run: light to import (the command line's help lists them);
``study/pipeline.py``'s ``STAGE_TABLE`` has one entry for each, in this order, and refuses to load otherwise."""

STAGES = ("prepare", "split", "gan", "judge", "feature_judge", "generate", "detection", "metrics", "probe", "utility",
          "report")
