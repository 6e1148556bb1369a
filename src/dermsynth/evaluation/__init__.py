"""Evaluation of judge classifiers (classification.py) and of generators through a judge (detection.py)."""
