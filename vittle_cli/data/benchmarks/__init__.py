"""Closed-form QA benchmarks in their published Hugging Face layouts (ScienceQA-IMG, MMMU, MME, MMStar):
reading the tables, turning rows into items, and the prompt templates' rendering."""
