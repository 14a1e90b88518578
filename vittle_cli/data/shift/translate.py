"""Sentence-level text shifts: the question translated into another language (de, zh, ko).

A translation is made once, by the LLM behind `vittle eval --judge` (vittle_cli.eval.judge), and stored in
$VITTLE_CACHE/translations.jsonl keyed by (language, question text); the registered perturbations only read
that store, so they stay deterministic and a rerun never calls the LLM again. `rate` and `seed` do not
apply to a translation and are ignored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vittle_cli.data.shift.registry import register_text
from vittle_cli.errors import DataError

LANGUAGES = {"de": "German", "zh": "Chinese (Simplified)", "ko": "Korean"}
TRANSLATOR_SYSTEM = "You are a professional translator."
TRANSLATION_REQUEST = (
    "Translate the following question into {language}. Keep its meaning exactly; reply with the "
    "translation only.\n\n{text}"
)
STORE = "translations.jsonl"


def translation_request(lang: str, text: str) -> str:
    return TRANSLATION_REQUEST.format(language=LANGUAGES[lang], text=text)


def _key(lang: str, text: str) -> str:
    return hashlib.sha256(f"{lang}\x1f{text}".encode()).hexdigest()


class TranslationStore:
    """Append-only jsonl of {key, lang, text, translation, translator}; the first translation of a text wins."""

    def __init__(self, path: Path | None = None):
        if path is None:
            from vittle_cli.model.builtin import cache_root

            path = cache_root() / STORE
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interrupted run; it is asked for again
                self.records.setdefault(rec["key"], rec)

    def get(self, lang: str, text: str) -> str | None:
        rec = self.records.get(_key(lang, text))
        return rec["translation"] if rec else None

    def add(self, lang: str, text: str, translation: str, translator: str) -> None:
        rec = {"key": _key(lang, text), "lang": lang, "text": text, "translation": translation}
        rec["translator"] = translator
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.records.setdefault(rec["key"], rec)


def translate_lang(spec_name: str) -> str | None:
    """'translate_de' -> 'de'; None for other perturbations."""
    lang = spec_name.removeprefix("translate_")
    return lang if spec_name.startswith("translate_") and lang in LANGUAGES else None


_OPENED: dict[str, tuple[tuple[int, int] | None, TranslationStore]] = {}


def _current_store() -> TranslationStore:
    """The default store, reread only when its file changed (a suite perturbs many questions)."""
    from vittle_cli.model.builtin import cache_root

    path = cache_root() / STORE
    stat = path.stat() if path.is_file() else None
    stamp = (stat.st_mtime_ns, stat.st_size) if stat else None
    cached = _OPENED.get(str(path))
    if cached is None or cached[0] != stamp:
        cached = (stamp, TranslationStore(path))
        _OPENED[str(path)] = cached
    return cached[1]


def _translated(lang: str):
    def perturb(text: str, rate: int, seed: int) -> str:
        store = _current_store()
        found = store.get(lang, text)
        if found is None:
            raise DataError(
                f"no {LANGUAGES[lang]} translation of {text[:60]!r} in {store.path}; "
                "vittle eval makes it once through the judge backend (pass --judge)"
            )
        return found

    perturb.__doc__ = f"the question translated into {LANGUAGES[lang]} by an LLM (made once, cached)"
    return perturb


for _lang in LANGUAGES:
    register_text(f"translate_{_lang}", family="sentence")(_translated(_lang))
