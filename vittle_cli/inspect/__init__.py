"""`vittle inspect`: embeddings under shift, bottleneck statistics, model and run views.

Pure analysis (matrix-based JSD, cosine distance, PCA) lives in `vittle_cli/model/repr_metrics.py` and the
hidden-state capture in `vittle_cli/model/capture.py` (eval uses both too); each view has its own module
with one `run_inspect_*` entry point that the CLI calls.
"""
