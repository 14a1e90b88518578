"""The EMID step of `vittle eval --emid` (the pipeline of `vittle inspect emid`): a first run vs a rerun.

Builds in a temp folder the LB-COCO fixture data (tests/openended_data.py: 6 questions, 2 images), an eval
folder of lbcoco-shift's first --variants variants with synthetic answers, and encoders of the published
shapes with random weights, built from their configs (nothing downloaded): a CLIP ViT-B/32 vision tower
(CLIPVisionConfig defaults: 224 px, patch 32, 12 layers of 768) and an XLM-R-base-shaped text model (12
layers of 768) with the tests' small tokenizer (so texts split into other tokens than xlm-roberta-base's;
the cost is the transformer's). Each round times, by this process's CPU time (benchmarks/_timing.py), a first
run (cache cleared: load the encoders, embed every variant, fit CLUB at the published hidden size 500 for
--club-steps steps, bootstrap) and a rerun on the caches (nothing embedded or fitted, the encoders not even
loaded: the bootstrap and the files). Prints the first run split into load+embed / fit / rest, the rerun,
and the median rerun/first ratio with its spread.

    python benchmarks/emid_step.py                               # 28 variants x 6 questions, 200 steps
    python benchmarks/emid_step.py --variants 10 --club-steps 50 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _timing import paired_ratio, spread_pct

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", type=int, default=28, help="lbcoco-shift's first N variants (default 28)")
    p.add_argument("--club-steps", type=int, default=200, help="CLUB fitting steps (default 200)")
    p.add_argument("--resamples", type=int, default=200, help="bootstrap resamples (default 200)")
    p.add_argument("--rounds", type=int, default=2, help="first-run / rerun pairs (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    return p.parse_args(argv)


def build_encoders(root: Path, texts: list[str]) -> tuple[str, str]:
    """Random-weight encoders of the published shapes, saved as folders. The text model gets a word-level
    tokenizer over `texts` (about one token per word; xlm-roberta-base makes about 1.3): a tiny BPE would
    cut the texts into characters and time 512-token inputs instead."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        PreTrainedTokenizerFast,
        XLMRobertaConfig,
        XLMRobertaModel,
    )

    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig()).save_pretrained(root / "clip")
    CLIPImageProcessor().save_pretrained(root / "clip")
    special = ["<s>", "<pad>", "</s>", "<unk>"]
    split = pre_tokenizers.Whitespace()
    words = sorted({w for t in texts for w, _ in split.pre_tokenize_str(t)})
    vocab = {w: i for i, w in enumerate(special + words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")  # fmt: skip
    cfg = XLMRobertaConfig(vocab_size=len(vocab), pad_token_id=1, max_position_embeddings=514)
    XLMRobertaModel(cfg).save_pretrained(root / "xlmr")
    tok.save_pretrained(root / "xlmr")
    return str(root / "clip"), str(root / "xlmr")


def build_eval_folder(root: Path, n_variants: int) -> Path:
    """results.json + predictions.jsonl as `vittle eval --suite lbcoco-shift` writes them."""
    from openended_data import make_lbcoco

    from vittle_cli.data.shift.openended import load_openended_suite
    from vittle_cli.data.shift.suite import load_suite

    suite = load_suite("lbcoco-shift").with_data({"data_root": str(make_lbcoco(root))})
    keep = [v for v in suite.variants if v.text is None or not v.text.name.startswith("translate")]
    keep = keep[:n_variants]  # translations need a judge-made store: left out
    out = root / "eval"
    out.mkdir()
    results = {"suite": {"name": suite.name, "seed": suite.seed, "data": suite.model_dump(mode="json")["data"]},
               "task": {"name": "openended"}, "prompt_suffix": suite.prompt_suffix,
               "variants": [v.model_dump(mode="json") for v in keep]}  # fmt: skip
    (out / "results.json").write_text(json.dumps(results))
    rows = [
        {"variant": v.name, "group": v.group, "question_id": it.question_id, "image": it.image, "text": it.text,
         "answer": it.reference if v.group == "clean" else f"{it.reference[: 40 + 7 * i]} (variant {j})"}
        for j, v in enumerate(keep) for i, it in enumerate(load_openended_suite(suite).items)
    ]  # fmt: skip
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _texts(out: Path) -> list[str]:
    """Every query and answer of the eval folder, and the fixture's reference answers."""
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    refs = (out.parent / "lbcoco" / "qa90_gpt4_answer.jsonl").read_text().splitlines()
    return [r["text"] for r in rows] + [r["answer"] for r in rows] + [json.loads(x)["text"] for x in refs]


def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    import vittle_cli.inspect.emid as emid_io
    import vittle_cli.inspect.emid_run as emid_run

    torch.set_num_threads(args.threads)
    parts = {"embed": 0.0, "fit": 0.0}

    def timed(name, fn):
        def wrapper(*a, **k):
            start = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                parts[name] += time.process_time() - start

        return wrapper

    emid_io.embed_variant = timed("embed", emid_io.embed_variant)
    emid_run.fitted_club = timed("fit", emid_run.fitted_club)

    class Quiet:
        def print(self, *a, **k):
            pass

    firsts, reruns, split = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = build_eval_folder(Path(tmp), args.variants)
        texts = _texts(out)
        vision, text = build_encoders(Path(tmp) / "enc", texts)
        tokens = statistics.median(len(ids) for ids in _tokenizer(text)(texts)["input_ids"])
        opts = emid_run.EmidOptions(vision_encoder=vision, text_encoder=text, train_steps=args.club_steps,
                                    resamples=args.resamples, cache_dir=Path(tmp) / "cache")  # fmt: skip
        for _ in range(args.rounds):
            shutil.rmtree(out / emid_run.CACHE_DIR, ignore_errors=True)
            parts.update(embed=0.0, fit=0.0)
            start = time.process_time()
            report = emid_run.run_inspect_emid(out, opts, Quiet())
            firsts.append(time.process_time() - start)
            split.append(dict(parts))
            start = time.process_time()
            again = emid_run.run_inspect_emid(out, opts, Quiet())
            reruns.append(time.process_time() - start)
            assert again["embedded_now"] == 0 and again["variants"] == report["variants"]
    print(f"{len(report['variants']) + 1} variants x {report['questions']} questions, CLUB hidden 500, "
          f"{args.club_steps} steps, {args.resamples} resamples, {args.threads} thread(s), process CPU time; "
          f"median text {tokens:.0f} tokens")  # fmt: skip
    first, embed = statistics.median(firsts), statistics.median(s["embed"] for s in split)
    fit = statistics.median(s["fit"] for s in split)
    print(f"first run: {first:.1f} s median (±{spread_pct(firsts):.1f}%, {args.rounds} rounds): load+embed "
          f"{embed:.1f} s, CLUB fit {fit:.1f} s ({1000 * fit / args.club_steps:.0f} ms/step), rest {first - embed - fit:.1f} s")  # fmt: skip
    print(f"rerun on the caches: {statistics.median(reruns):.2f} s median (±{spread_pct(reruns):.1f}%)")
    ratio = paired_ratio(reruns, firsts)
    print(f"rerun / first run: {ratio.median:.3f} (±{ratio.spread_pct:.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
