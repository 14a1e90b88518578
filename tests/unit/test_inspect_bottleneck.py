"""Posterior statistics of `vittle inspect bottleneck`, checked against a direct computation."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from vittle_cli.inspect.bottleneck_stats import posterior_stats
from vittle_cli.model.attach import attach_bottleneck, detach_bottleneck, image_token_ids
from vittle_cli.model.bottleneck import VittleConfig
from vittle_cli.model.capture import Query, encode_batch


def _queries():
    return [
        Query(str(i), Image.new("RGB", (48, 48), (60 * i, 20, 200)), "Is there a blue star?")
        for i in range(2)
    ]


@pytest.mark.parametrize("prior", ["F", "L"])
def test_stats_match_direct_computation(tiny_llava, prior):
    model, processor = tiny_llava
    qs = _queries()
    # the bottleneck's input at layer 6 is the plain model's layer-6 output
    batch = encode_batch(processor, qs, "cpu")
    with torch.no_grad():
        h = model(**batch, output_hidden_states=True, use_cache=False).hidden_states[7]
    visual = torch.isin(batch["input_ids"], torch.tensor(image_token_ids(model)))
    attn = batch["attention_mask"].bool()

    bn = attach_bottleneck(model, VittleConfig(prior=prior))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in bn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        bn.text_net[2].bias[96:] += 3.0  # push text log-variances past the +2.3025 clamp
        bn.visual_net[2].bias[96:] -= 10.0  # and visual ones well below it
    got = posterior_stats(model, processor, qs, batch_size=1)

    for modality, net, mask in (
        ("visual", bn.visual_net, visual & attn),
        ("text", bn.text_net, ~visual & attn),
    ):
        rows = h[mask]
        with torch.no_grad():
            mu, raw = net(rows).chunk(2, dim=-1)
        logvar = raw.clamp(-2.3025, 2.3025)
        if prior == "F":
            kl = 0.5 * (mu**2 + logvar.exp() - logvar - 1)
        else:
            pm = getattr(bn, f"{modality}_prior_mu").detach()
            pl = getattr(bn, f"{modality}_prior_logvar").detach().clamp(-2.3025, 2.3025)
            kl = 0.5 * (pl - logvar + (logvar.exp() + (mu - pm) ** 2) / pl.exp() - 1)
        s = got[modality]
        assert s.tokens == rows.shape[0]
        assert s.sigma_mean == pytest.approx(float(torch.exp(0.5 * logvar).mean()), rel=1e-4)
        assert s.kl_per_token_mean == pytest.approx(float(kl.mean()), rel=1e-4)
        assert s.kl_per_token_sum_mean == pytest.approx(float(kl.sum(-1).mean()), rel=1e-4)
        assert s.clamped_high_share == pytest.approx(float((raw > 2.3025).float().mean()), abs=1e-6)
        median = float(torch.exp(0.5 * logvar.flatten().median()))
        assert s.sigma_quantiles["p50"] == pytest.approx(median, rel=5e-3)
        upd = float((0.5 * (mu - rows)).norm(dim=-1).sum() / rows.norm(dim=-1).sum())
        assert s.relative_update == pytest.approx(upd, rel=1e-4)
    assert got["text"].clamped_high_share > 0.3 > got["visual"].clamped_high_share
    assert math.isclose(sum(got[m].tokens for m in got), int(attn.sum()))
    detach_bottleneck(model)


def test_quantiles_are_ordered_and_within_clamp(tiny_llava):
    model, processor = tiny_llava
    attach_bottleneck(model, VittleConfig())
    s = posterior_stats(model, processor, _queries())["visual"]
    q = [s.sigma_quantiles[k] for k in ("p5", "p25", "p50", "p75", "p95")]
    assert q == sorted(q)
    assert math.exp(-0.5 * 2.3025) - 1e-6 <= q[0] and q[-1] <= math.exp(0.5 * 2.3025) + 1e-6


def test_no_bottleneck_is_a_model_error(tiny_llava):
    from vittle_cli.errors import ModelError

    model, processor = tiny_llava
    with pytest.raises(ModelError, match="no Vittle bottleneck"):
        posterior_stats(model, processor, _queries())
