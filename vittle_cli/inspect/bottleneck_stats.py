"""`vittle inspect bottleneck`: what the posterior looks like on real inputs, per modality.

The bottleneck's input is captured by a pre-hook during ordinary eval forwards; the posterior network is
then re-run on those rows to get mu and the raw log-variance. Reported per modality: sigma (mean and
quantiles, from a fine histogram of the clamped log-variance, so memory stays flat), the per-token KL to the
prior (mean over hidden dims, as in the training loss, and summed), the share of log-variances the clamp
cuts, and how far the eval-mode update (1 - alpha_end) h + alpha_end mu moves h.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from vittle_cli.errors import ModelError
from vittle_cli.model.attach import attached_layers, get_bottleneck, image_token_ids
from vittle_cli.model.bottleneck import clamp_logvar_ste, gaussian_kl
from vittle_cli.model.capture import MODALITIES, Query, encode_batch

_BINS = 4000
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class ModalityStats:
    tokens: int = 0
    sigma_mean: float | None = None
    sigma_quantiles: dict[str, float] = field(default_factory=dict)
    kl_per_token_mean: float | None = None  # mean over hidden dims (the loss's KLbar), averaged over tokens
    kl_per_token_sum_mean: float | None = None  # summed over hidden dims
    kl_per_token_p95: float | None = None
    clamped_low_share: float | None = None  # raw log-variance below -clamp
    clamped_high_share: float | None = None
    mu_abs_mean: float | None = None
    relative_update: float | None = None  # ||h' - h|| / ||h|| in eval mode


@dataclass
class BottleneckReport:
    source: str
    data: str
    questions: int
    layers: dict[str, int]
    prior: str
    alpha_in_use: float
    alpha_end: float
    schedule: str
    logvar_clamp: float
    stats: dict[str, ModalityStats] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


class _Accumulator:
    """Running sums and a log-variance histogram for one modality."""

    def __init__(self, clamp: float):
        self.clamp = clamp
        self.hist = torch.zeros(_BINS, dtype=torch.float64)
        self.tokens = 0
        self.elements = 0
        self.sums = dict.fromkeys(("sigma", "kl", "kl_sum", "mu_abs", "low", "high", "upd", "norm"), 0.0)
        self.kl_tokens: list[torch.Tensor] = []

    def add(
        self, h: torch.Tensor, mu: torch.Tensor, raw_logvar: torch.Tensor, kl: torch.Tensor, alpha: float
    ):
        logvar = raw_logvar.clamp(-self.clamp, self.clamp)
        # clamp again in float64: float32(2.3025) lies just above the float64 bound and histc would drop it
        self.hist += torch.histc(
            logvar.double().clamp(-self.clamp, self.clamp), bins=_BINS, min=-self.clamp, max=self.clamp
        )
        self.tokens += h.shape[0]
        self.elements += logvar.numel()
        s = self.sums
        s["sigma"] += float(torch.exp(0.5 * logvar).sum())
        s["kl"] += float(kl.mean(dim=-1).sum())
        s["kl_sum"] += float(kl.sum())
        s["mu_abs"] += float(mu.abs().sum())
        s["low"] += float((raw_logvar < -self.clamp).sum())
        s["high"] += float((raw_logvar > self.clamp).sum())
        s["upd"] += float((alpha * (mu - h)).norm(dim=-1).sum())
        s["norm"] += float(h.norm(dim=-1).sum())
        self.kl_tokens.append(kl.mean(dim=-1).cpu())

    def result(self) -> ModalityStats:
        if self.tokens == 0:
            return ModalityStats()
        s, n, e = self.sums, self.tokens, self.elements
        cdf = torch.cumsum(self.hist, 0) / self.hist.sum()
        edges = torch.linspace(-self.clamp, self.clamp, _BINS + 1, dtype=torch.float64)
        quantiles = {}
        for q in QUANTILES:
            idx = int(torch.searchsorted(cdf, torch.tensor(q, dtype=torch.float64)))
            quantiles[f"p{round(q * 100)}"] = float(torch.exp(0.5 * edges[min(idx + 1, _BINS)]))
        kl_tokens = torch.cat(self.kl_tokens)
        return ModalityStats(
            tokens=n,
            sigma_mean=s["sigma"] / e,
            sigma_quantiles=quantiles,
            kl_per_token_mean=s["kl"] / n,
            kl_per_token_sum_mean=s["kl_sum"] / n,
            kl_per_token_p95=float(torch.quantile(kl_tokens.float(), 0.95)) if n < 2**24 else None,
            clamped_low_share=s["low"] / e,
            clamped_high_share=s["high"] / e,
            mu_abs_mean=s["mu_abs"] / e,
            relative_update=s["upd"] / max(s["norm"], 1e-12),
        )


def _prior(bn, modality: str):
    if bn.config.prior != "L":
        return None, None
    mu = getattr(bn, f"{modality}_prior_mu")
    return mu, clamp_logvar_ste(getattr(bn, f"{modality}_prior_logvar"), bn.config.logvar_clamp)


@torch.no_grad()
def posterior_stats(
    model, processor, queries: Sequence[Query], batch_size: int = 8
) -> dict[str, ModalityStats]:
    """Per-modality posterior statistics of the attached bottleneck over `queries` (eval mode)."""
    bn = get_bottleneck(model)
    if bn is None:
        raise ModelError("the model has no Vittle bottleneck attached")
    cfg = bn.config
    acc = {m: _Accumulator(cfg.logvar_clamp) for m in MODALITIES}
    first = next(model.parameters())
    device, dtype = first.device, first.dtype
    token_ids = torch.tensor(image_token_ids(model), device=device)
    calls: list[tuple[torch.Tensor, dict]] = []

    def pre_hook(module, args, kwargs):
        calls.append(
            (
                args[0].detach(),
                {"visual": kwargs.get("apply_visual", True), "text": kwargs.get("apply_text", True)},
            )
        )

    handle = bn.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        for start in range(0, len(queries), batch_size):
            batch = encode_batch(processor, queries[start : start + batch_size], device, dtype)
            calls.clear()
            model(**batch, use_cache=False)
            attn = batch["attention_mask"].bool()
            visual = torch.isin(batch["input_ids"], token_ids) & attn
            masks = {"visual": visual, "text": attn & ~visual}
            for hidden, enabled in calls:
                for modality in MODALITIES:
                    if not enabled[modality]:
                        continue
                    h = hidden[masks[modality]].float()
                    if h.shape[0] == 0:
                        continue
                    net = bn.visual_net if modality == "visual" else bn.text_net
                    mu, raw = net(h.to(hidden.dtype)).float().chunk(2, dim=-1)
                    prior_mu, prior_logvar = _prior(bn, modality)
                    kl = gaussian_kl(
                        mu, raw.clamp(-cfg.logvar_clamp, cfg.logvar_clamp), prior_mu, prior_logvar
                    )
                    acc[modality].add(h, mu, raw, kl, cfg.alpha_end)
    finally:
        handle.remove()
    return {m: a.result() for m, a in acc.items()}


def _queries(
    suite: str | None, limit: int | None, data_vars: dict[str, str] | None
) -> tuple[str, list[Query]]:
    """The clean questions of `suite` (default: the builtin `shapes` suite), first `limit` per split."""
    from vittle_cli.data.shift import load_suite, suite_questions

    the_suite = load_suite(suite or "shapes")
    if data_vars:
        the_suite = the_suite.with_data(data_vars)
    clean = next((v for v in the_suite.variants if v.group == "clean"), the_suite.variants[0])
    qs = suite_questions(the_suite, clean, limit_per_split=limit)
    return f"{the_suite.name}/{clean.name}", [Query(q.question_id, q.image, q.text) for q in qs]


def run_inspect_bottleneck(
    model: str,
    *,
    suite: str | None = None,
    limit: int | None = 4,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "auto",
    base: str | None = None,
    data_vars: dict[str, str] | None = None,
) -> BottleneckReport:
    """Load `model` and report its bottleneck's posterior statistics on clean suite questions.

    Raises:
        ModelError: the model has no bottleneck (or cannot be loaded).
    """
    from vittle_cli.inspect.loading import load_for_inspect

    loaded, processor = load_for_inspect(model, dtype=dtype, device=device, base=base)
    bn = get_bottleneck(loaded)
    if bn is None:
        raise ModelError(
            f"{model} has no Vittle bottleneck (no vittle_config.json + vittle_bottleneck.safetensors); "
            "`vittle inspect model` shows what it holds"
        )
    data, queries = _queries(suite, limit, data_vars)
    layer_v, layer_t = attached_layers(loaded)
    cfg = bn.config
    return BottleneckReport(
        source=model,
        data=data,
        questions=len(queries),
        layers={"visual": layer_v, "text": layer_t},
        prior=cfg.prior,
        alpha_in_use=cfg.alpha_end,  # eval mode always uses alpha_end and the posterior mean
        alpha_end=cfg.alpha_end,
        schedule=cfg.schedule,
        logvar_clamp=cfg.logvar_clamp,
        stats=posterior_stats(loaded, processor, queries, batch_size),
    )


def render_bottleneck_report(report: BottleneckReport, console) -> None:
    """Print the report as rich tables."""
    from rich.table import Table

    head = Table(title=f"bottleneck of {report.source}", show_header=False)
    head.add_row(
        "layers", f"visual after layer {report.layers['visual']}, text after layer {report.layers['text']}"
    )
    head.add_row(
        "prior", "F: N(0, I)" if report.prior == "F" else "L: learnable diagonal Gaussian per modality"
    )
    head.add_row(
        "alpha in use",
        f"{report.alpha_in_use} (eval: alpha_end, posterior mean; train: {report.schedule} fade-in)",
    )
    head.add_row("log-variance clamp", f"+-{report.logvar_clamp}")
    head.add_row("data", f"{report.data} ({report.questions} questions)")
    console.print(head)
    table = Table(title="posterior statistics per modality")
    table.add_column("statistic")
    for m in MODALITIES:
        table.add_column(m, justify="right")
    rows = [
        ("tokens", lambda s: f"{s.tokens:,}"),
        ("sigma mean", lambda s: _f(s.sigma_mean)),
        *[
            (f"sigma {q}", lambda s, q=q: _f(s.sigma_quantiles.get(q)))
            for q in ("p5", "p25", "p50", "p75", "p95")
        ],
        ("KL / token (dim mean)", lambda s: _f(s.kl_per_token_mean)),
        ("KL / token (dim mean) p95", lambda s: _f(s.kl_per_token_p95)),
        ("KL / token (summed)", lambda s: _f(s.kl_per_token_sum_mean)),
        ("clamped low (share)", lambda s: _pct(s.clamped_low_share)),
        ("clamped high (share)", lambda s: _pct(s.clamped_high_share)),
        ("|mu| mean", lambda s: _f(s.mu_abs_mean)),
        ("relative update of h", lambda s: _f(s.relative_update)),
    ]
    for name, fmt in rows:
        table.add_row(name, *[fmt(report.stats[m]) for m in MODALITIES])
    console.print(table)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"
