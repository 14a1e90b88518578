"""`vittle inspect`: embeddings under shift, bottleneck statistics, model and run views.

Pure analysis (matrix-based JSD, cosine distance, PCA) lives in `metrics.py`; each view has its own module
with one `run_inspect_*` entry point that the CLI calls.
"""
