"""The pure-torch bottleneck: every formula of shared/METHOD.md §2 and §4, checked numerically."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vittle_cli.errors import ModelError
from vittle_cli.model.bottleneck import (
    VittleBottleneck,
    VittleConfig,
    alpha_at,
    clamp_logvar_ste,
    gaussian_kl,
    split_tokens,
)


def _random_gaussians(shape=(4, 7, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g)
    logvar = torch.empty(shape).uniform_(-2.3, 2.3, generator=g)
    prior_mu = torch.randn(shape[-1], generator=g)
    prior_logvar = torch.empty(shape[-1]).uniform_(-2.3, 2.3, generator=g)
    return mu, logvar, prior_mu, prior_logvar


# ---- gaussian_kl ---------------------------------------------------------------------------------------


def test_kl_fixed_prior_matches_closed_form_in_float64():
    mu, logvar, _, _ = _random_gaussians()
    m, lv = mu.double(), logvar.double()
    # METHOD.md §4 (F): 0.5 * (mu^2 + sigma^2 - log sigma^2 - 1), written out with sigma^2 = exp(lv).
    sigma2 = torch.exp(lv)
    reference = 0.5 * (m * m + sigma2 - torch.log(sigma2) - 1.0)
    kl = gaussian_kl(mu, logvar)
    assert kl.dtype == torch.float32 and kl.shape == mu.shape
    torch.testing.assert_close(kl.double(), reference, rtol=1e-6, atol=1e-6)


def test_kl_learnable_prior_matches_closed_form_in_float64():
    mu, logvar, prior_mu, prior_logvar = _random_gaussians(seed=1)
    m, lv, pm, plv = mu.double(), logvar.double(), prior_mu.double(), prior_logvar.double()
    # METHOD.md §4 (L): 0.5 * (log sp^2 - log s^2 + (s^2 + (mu - mu_p)^2) / sp^2 - 1)
    s2, sp2 = torch.exp(lv), torch.exp(plv)
    reference = 0.5 * (torch.log(sp2) - torch.log(s2) + (s2 + (m - pm) ** 2) / sp2 - 1.0)
    kl = gaussian_kl(mu, logvar, prior_mu, prior_logvar)
    assert kl.dtype == torch.float32 and kl.shape == mu.shape
    torch.testing.assert_close(kl.double(), reference, rtol=1e-6, atol=1e-6)


def test_kl_is_not_the_reference_codes_halved_log_term():
    # The released reference code uses 0.5 * (mu^2 + s^2 - 0.5 * log s^2 - 1); vittle must not.
    mu = torch.zeros(3)
    logvar = torch.tensor([1.0, -1.0, 2.0])
    halved = 0.5 * (logvar.exp() - 0.5 * logvar - 1.0)
    correct = 0.5 * (logvar.exp() - logvar - 1.0)
    torch.testing.assert_close(gaussian_kl(mu, logvar), correct)
    assert not torch.allclose(gaussian_kl(mu, logvar), halved)


def test_kl_zero_when_posterior_equals_prior_and_positive_otherwise():
    mu, logvar, prior_mu, prior_logvar = _random_gaussians(shape=(5, 16), seed=2)
    same = gaussian_kl(prior_mu.expand(5, 16), prior_logvar.expand(5, 16), prior_mu, prior_logvar)
    torch.testing.assert_close(same, torch.zeros(5, 16), atol=1e-6, rtol=0)
    assert (gaussian_kl(mu, logvar, prior_mu, prior_logvar) > 0).all()
    # A learnable prior at its initial value N(0, I) gives the fixed-prior KL.
    torch.testing.assert_close(
        gaussian_kl(mu, logvar, torch.zeros(16), torch.zeros(16)), gaussian_kl(mu, logvar)
    )


def test_kl_of_bf16_inputs_is_float32():
    mu, logvar, prior_mu, prior_logvar = _random_gaussians(seed=3)
    kl_f = gaussian_kl(mu.bfloat16(), logvar.bfloat16())
    kl_l = gaussian_kl(mu.bfloat16(), logvar.bfloat16(), prior_mu.bfloat16(), prior_logvar.bfloat16())
    assert kl_f.dtype == torch.float32 and kl_l.dtype == torch.float32
    # Computed from the bf16 values in float32, not rounded back to bf16.
    torch.testing.assert_close(kl_f, gaussian_kl(mu.bfloat16().float(), logvar.bfloat16().float()))


# ---- clamp ---------------------------------------------------------------------------------------------


def test_clamp_forward_value_and_straight_through_gradient():
    logvar = torch.tensor([-5.0, -2.3025, -1.0, 0.0, 2.0, 2.3025, 7.0], requires_grad=True)
    out = clamp_logvar_ste(logvar, 2.3025)
    assert torch.equal(out.detach(), logvar.detach().clamp(-2.3025, 2.3025))
    weights = torch.arange(1.0, 8.0)
    (out * weights).sum().backward()
    # Straight-through: the clamped entries (-5, 7) get the gradient too, unchanged.
    assert torch.equal(logvar.grad, weights)


def test_clamp_is_exact_in_bf16():
    logvar = (torch.randn(1000) * 4).bfloat16().requires_grad_()
    out = clamp_logvar_ste(logvar, 2.3025)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out.detach(), logvar.detach().clamp(-2.3025, 2.3025))


# ---- alpha schedule ------------------------------------------------------------------------------------


def test_alpha_sigmoid_schedule_values():
    cfg = VittleConfig()  # alpha_end 0.5, k 10, t0 0.5
    total = 1000
    assert alpha_at(0, total, cfg) == pytest.approx(0.5 / (1 + math.exp(5.0)), rel=1e-12)
    assert alpha_at(total // 2, total, cfg) == pytest.approx(0.25, rel=1e-12)
    assert alpha_at(total, total, cfg) == pytest.approx(0.5 / (1 + math.exp(-5.0)), rel=1e-12)
    steps = [alpha_at(s, total, cfg) for s in range(0, total + 1, 50)]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # strictly increasing
    custom = VittleConfig(alpha_end=0.8, sigmoid_k=4.0, sigmoid_t0=0.25)
    assert alpha_at(100, 400, custom) == pytest.approx(0.4, rel=1e-12)
    assert alpha_at(400, 400, custom) == pytest.approx(0.8 / (1 + math.exp(-3.0)), rel=1e-12)


def test_alpha_linear_and_constant_schedules():
    linear = VittleConfig(schedule="linear")
    assert alpha_at(0, 200, linear) == 0.0
    assert alpha_at(100, 200, linear) == pytest.approx(0.25)
    assert alpha_at(200, 200, linear) == pytest.approx(0.5)
    assert alpha_at(300, 200, linear) == pytest.approx(0.5)  # never past alpha_end
    constant = VittleConfig(schedule="constant", alpha_end=0.3)
    assert [alpha_at(s, 10, constant) for s in (0, 5, 10)] == [0.3, 0.3, 0.3]


def test_alpha_needs_the_real_total_steps():
    with pytest.raises(ValueError, match="total_steps"):
        alpha_at(0, 0, VittleConfig())


# ---- config ----------------------------------------------------------------------------------------------


def test_config_json_round_trip_and_recipe_field_names():
    from vittle_cli.recipe import Recipe

    cfg = VittleConfig.from_section(Recipe().bottleneck)
    assert cfg == VittleConfig(format_version=cfg.format_version)
    custom = VittleConfig(layer_v=3, layer_t=-2, beta_v=0.2, prior="L", schedule="linear", hidden_size=96)
    assert VittleConfig.from_json(custom.to_json()) == custom
    assert json.loads(custom.to_json())["prior"] == "L"


@pytest.mark.parametrize(
    "text",
    [
        '{"prior": "X"}',
        '{"schedule": "cosine"}',
        '{"no_such_field": 1}',
        "[1, 2]",
        "{not json",
        '{"format_version": 99}',
    ],
)
def test_config_rejects_bad_json(text):
    with pytest.raises(ModelError):
        VittleConfig.from_json(text)


def test_resolve_layers_default_negative_and_out_of_range():
    assert VittleConfig().resolve_layers(32) == (24, 24)  # the paper's layer 24 of 32
    assert VittleConfig().resolve_layers(8) == (6, 6)
    assert VittleConfig(layer_v=-1, layer_t=0).resolve_layers(8) == (7, 0)
    assert VittleConfig(layer_v=2, layer_t=-8).resolve_layers(8) == (2, 0)
    assert VittleConfig(layer_v=2).resolve_layers(8) == (2, 2)  # the text layer follows by default
    assert VittleConfig(layer_t=3).resolve_layers(8) == (6, 3)
    for bad in (8, -9):
        with pytest.raises(ModelError, match=r"0\.\.7"):
            VittleConfig(layer_t=bad).resolve_layers(8)


# ---- the module --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [8, 96])
def test_parameter_count_per_modality(d):
    fixed = VittleBottleneck(VittleConfig(), hidden_size=d)
    per_modality = 3 * d * d + 3 * d
    assert sum(p.numel() for p in fixed.visual_net.parameters()) == per_modality
    assert sum(p.numel() for p in fixed.text_net.parameters()) == per_modality
    assert sum(p.numel() for p in fixed.parameters()) == 2 * per_modality
    learnable = VittleBottleneck(VittleConfig(prior="L"), hidden_size=d)
    assert sum(p.numel() for p in learnable.parameters()) == 2 * per_modality + 4 * d  # + mu_p, logvar_p


def test_learnable_priors_are_separate_and_start_at_standard_normal():
    bn = VittleBottleneck(VittleConfig(prior="L"), hidden_size=8)
    names = {n for n, _ in bn.named_parameters() if "prior" in n}
    assert names == {"visual_prior_mu", "visual_prior_logvar", "text_prior_mu", "text_prior_logvar"}
    assert all(torch.equal(p, torch.zeros(8)) for n, p in bn.named_parameters() if "prior" in n)
    assert bn.visual_prior_mu is not bn.text_prior_mu


def _inputs(b=3, t=10, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t, d, generator=g)
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[0, 2:6] = True  # image in the middle
    mask[2, 0:3] = True  # row 1 is text only
    return hidden, mask


def test_each_network_sees_only_its_own_tokens():
    hidden, mask = _inputs()
    bn = VittleBottleneck(VittleConfig(), hidden_size=16).train()
    seen = {}
    bn.visual_net.register_forward_pre_hook(lambda m, a: seen.__setitem__("visual", a[0].clone()))
    bn.text_net.register_forward_pre_hook(lambda m, a: seen.__setitem__("text", a[0].clone()))
    bn(hidden, mask)
    assert torch.equal(seen["visual"], hidden[mask])
    assert torch.equal(seen["text"], hidden[~mask])
    assert seen["visual"].shape[0] == 7 and seen["text"].shape[0] == 23


def test_eval_mode_uses_the_mean_and_alpha_end():
    hidden, mask = _inputs()
    bn = VittleBottleneck(VittleConfig(alpha_end=0.4), hidden_size=16).eval()
    bn.alpha = 0.01  # ignored in eval mode
    out = bn(hidden, mask)
    with torch.no_grad():
        mu_v = bn.visual_net(hidden[mask])[:, :16]
        mu_t = bn.text_net(hidden[~mask])[:, :16]
        torch.testing.assert_close(out[mask], 0.6 * hidden[mask] + 0.4 * mu_v)
        torch.testing.assert_close(out[~mask], 0.6 * hidden[~mask] + 0.4 * mu_t)
    assert torch.equal(out, bn(hidden, mask))  # deterministic
    assert bn.last_kl_v is None and bn.last_kl_t is None


def test_train_mode_samples_and_interpolates_with_alpha():
    hidden, mask = _inputs()
    bn = VittleBottleneck(VittleConfig(logvar_clamp=1.0), hidden_size=16).train()
    bn.alpha = 0.3
    torch.manual_seed(7)
    out = bn(hidden, mask, apply_text=False)
    with torch.no_grad():
        mu, logvar = bn.visual_net(hidden[mask]).chunk(2, dim=-1)
        torch.manual_seed(7)
        eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar.clamp(-1.0, 1.0)) * eps
        torch.testing.assert_close(out[mask], 0.7 * hidden[mask] + 0.3 * z)
        expected_kl = gaussian_kl(mu, logvar.clamp(-1.0, 1.0)).mean(-1)
    assert torch.equal(out[~mask], hidden[~mask])  # text untouched when apply_text=False
    assert bn.last_kl_v.dtype == torch.float32 and bn.last_kl_v.shape == mask.shape
    torch.testing.assert_close(bn.last_kl_v[mask], expected_kl)
    assert torch.equal(bn.last_kl_v[~mask], torch.zeros(int((~mask).sum())))
    assert bn.last_kl_t is None
    torch.manual_seed(8)
    assert not torch.equal(out, bn(hidden, mask, apply_text=False))  # a fresh sample each call


def test_alpha_zero_in_train_mode_leaves_hidden_unchanged():
    hidden, mask = _inputs()
    bn = VittleBottleneck(VittleConfig(), hidden_size=16).train()
    bn.alpha = 0.0
    assert torch.equal(bn(hidden, mask), hidden)


def test_bf16_compute_keeps_dtype_and_kl_float32():
    hidden, mask = _inputs()
    bn = VittleBottleneck(VittleConfig(prior="L"), hidden_size=16).to(torch.bfloat16).train()
    bn.alpha = 0.5
    out = bn(hidden.bfloat16(), mask)
    assert out.dtype == torch.bfloat16
    assert bn.last_kl_v.dtype == torch.float32 and bn.last_kl_t.dtype == torch.float32
    assert torch.isfinite(bn.last_kl_v).all() and torch.isfinite(bn.last_kl_t).all()


def test_gradients_reach_both_networks_and_both_priors():
    hidden, mask = _inputs()
    bn = VittleBottleneck(VittleConfig(prior="L"), hidden_size=16).train()
    bn.alpha = 0.5
    out = bn(hidden, mask)
    (out.square().mean() + bn.last_kl_v.sum() + bn.last_kl_t.sum()).backward()
    for name, p in bn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_empty_selection_still_gives_zero_gradients_not_none():
    # ZeRO-3 ranks must all use every parameter: a text-only batch still calls the visual net.
    hidden, _ = _inputs()
    mask = torch.zeros(hidden.shape[:2], dtype=torch.bool)
    bn = VittleBottleneck(VittleConfig(), hidden_size=16).train()
    bn.alpha = 0.5
    out = bn(hidden, mask)
    (out.sum() + bn.last_kl_t.sum() + bn.last_kl_v.sum()).backward()
    assert torch.equal(bn.last_kl_v, torch.zeros(mask.shape))
    for p in bn.visual_net.parameters():
        assert p.grad is not None and torch.equal(p.grad, torch.zeros_like(p))


def test_mask_shape_mismatch_is_a_clear_error():
    hidden, mask = _inputs()
    bn = VittleBottleneck(VittleConfig(), hidden_size=16)
    with pytest.raises(ModelError, match="visual mask shape"):
        bn(hidden, mask[:, :-1])


def test_needs_a_hidden_size():
    with pytest.raises(ModelError, match="hidden_size"):
        VittleBottleneck(VittleConfig())


def test_config_is_the_recipe_section_without_enabled():
    """One definition: VittleConfig inherits the section's fields, defaults and checks."""
    from vittle_cli.recipe import BottleneckSection

    section_fields = set(BottleneckSection.model_fields) - {"enabled"}
    assert section_fields <= set(VittleConfig.model_fields)
    assert set(VittleConfig.model_fields) - section_fields == {"enabled", "hidden_size", "format_version"}
    cfg = VittleConfig.from_section(BottleneckSection(enabled=True, beta_v=0.3, prior="L"))
    assert (cfg.beta_v, cfg.prior) == (0.3, "L")
    assert "enabled" not in json.loads(cfg.to_json())
    assert VittleConfig.from_section({"enabled": True, "alpha_end": 0.2}).alpha_end == 0.2
    for bad in ({"alpha_end": 1.5}, {"beta_v": -1}, {"sigmoid_k": 0}, {"no_such": 1}):
        with pytest.raises(ModelError, match="invalid bottleneck config"):
            VittleConfig.from_section(bad)


# ---- the index hot path (issue #17) -------------------------------------------------------------------


def test_split_tokens_gives_the_masks_positions_in_ascending_order():
    mask = torch.tensor([[True, False, True, False], [False, True, True, False]])
    split = split_tokens(mask)
    assert split.visual_index.tolist() == [0, 2, 5, 6]
    assert split.text_index.tolist() == [1, 3, 4, 7]
    assert torch.equal(split.mask, mask)


def _boolean_mask_reference(bn, hidden, mask):
    """The pre-#17 forward (boolean-mask gather/scatter), to prove the index path is bit-identical."""
    out = hidden.clone()
    kls = {}
    for modality, m in (("visual", mask), ("text", ~mask)):
        rows, kl = bn._transform(hidden[m], modality)
        out[m] = rows.to(hidden.dtype)
        full = torch.zeros(hidden.shape[:2])
        full[m] = kl
        kls[modality] = full
    return out, kls


def test_index_path_is_bit_identical_to_boolean_masking_values_noise_kl_and_gradients():
    hidden, mask = _inputs()
    bn = VittleBottleneck(VittleConfig(prior="L"), hidden_size=16).train()
    bn.alpha = 0.4
    results = []
    for forward in (
        lambda h: _boolean_mask_reference(bn, h, mask),
        lambda h: (bn(h, split_tokens(mask)), None),
    ):
        h = hidden.clone().requires_grad_(True)
        torch.manual_seed(3)
        out, kls = forward(h)
        kls = kls or {"visual": bn.last_kl_v, "text": bn.last_kl_t}
        (out.square().sum() + kls["visual"].sum() + kls["text"].sum()).backward()
        grads = [h.grad] + [p.grad.clone() for p in bn.parameters()]
        bn.zero_grad(set_to_none=True)
        results.append((out.detach(), kls["visual"].detach(), kls["text"].detach(), grads))
    (out_a, kv_a, kt_a, g_a), (out_b, kv_b, kt_b, g_b) = results
    assert torch.equal(out_a, out_b) and torch.equal(kv_a, kv_b) and torch.equal(kt_a, kt_b)
    assert all(torch.equal(a, b) for a, b in zip(g_a, g_b, strict=True))
