"""The comparison harness behind `tools/compare.py`: side-by-side comparisons, ablations and sweeps of masked
pretraining, run as subprocesses of the tools from this source checkout, with their reports.

It is an experiment runner, not library code: it is not installed with hiermae, reads configs relative to the
checkout, and nothing in `hiermae/`, `backbones/`, `downstream/` or the other tools imports it.
"""
