"""``python -m dermsynth``: the same command line as ``dermsynth``."""

from dermsynth.cli import main

if __name__ == "__main__":
    main(prog_name="dermsynth")
