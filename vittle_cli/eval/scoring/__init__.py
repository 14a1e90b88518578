"""Answer parsers and score aggregation of the closed-form QA benchmarks (ScienceQA, MMMU, MME, MMStar)."""
