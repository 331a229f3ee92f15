"""Side-by-side comparisons and ablations of masked pretraining (`tools/compare.py`)."""
