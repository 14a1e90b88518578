"""Distribution shifts for evaluation: the perturbation registry, suites, POPE data and suite questions.

Shared by `vittle eval` and `vittle inspect embeddings` (which must not import each other). Importing this
package is cheap: the perturbation libraries load on first use.
"""

from vittle_cli.data.shift.items import DataReport, EvalItem, ItemSet
from vittle_cli.data.shift.questions import SuiteQuestion, load_suite_data, suite_questions
from vittle_cli.data.shift.registry import (
    Perturbation,
    derive_seed,
    get_perturbation,
    list_perturbations,
    register_text,
    register_visual,
)
from vittle_cli.data.shift.suite import Suite, Variant, load_suite, shipped_suites

__all__ = [
    "DataReport",
    "EvalItem",
    "ItemSet",
    "Perturbation",
    "Suite",
    "SuiteQuestion",
    "Variant",
    "derive_seed",
    "get_perturbation",
    "list_perturbations",
    "load_suite",
    "load_suite_data",
    "register_text",
    "register_visual",
    "shipped_suites",
    "suite_questions",
]
