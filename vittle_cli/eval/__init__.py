"""Evaluation: POPE scoring (metrics), the resumable runner (run_eval), reports and compare (run_compare).

Suites, perturbations and POPE data live in vittle_cli.data.shift (shared with `vittle inspect`).
Importing this package imports nothing heavy; the generation engine (generate.py) loads torch.
"""
