"""vittle_loss: CE + beta_v * KLbar_v + beta_t * KLbar_t over the right tokens (METHOD.md §1, §3)."""

from __future__ import annotations

import pytest
import torch

from vittle_cli.errors import ModelError
from vittle_cli.model.bottleneck import VittleBottleneck, VittleConfig
from vittle_cli.model.loss import vittle_loss

D = 8


def _batch():
    """Two rows of 8 tokens. Row 0: left pad, system, image x3, query, response x2.
    Row 1: text only: system, query x3, response x2, right pad x2."""
    visual = torch.zeros(2, 8, dtype=torch.bool)
    visual[0, 2:5] = True
    attention = torch.ones(2, 8, dtype=torch.long)
    attention[0, 0] = 0
    attention[1, 6:] = 0
    labels = torch.full((2, 8), -100)
    labels[0, 6:] = 5
    labels[1, 4:6] = 7
    # The KL_t tokens, listed by hand: not padding, not image, not a response target.
    query = [(0, 1), (0, 5), (1, 0), (1, 1), (1, 2), (1, 3)]
    return visual, attention, labels, query


def _forward(prior="F", visual=None, seed=0):
    torch.manual_seed(seed)
    bn = VittleBottleneck(VittleConfig(prior=prior, beta_v=0.3, beta_t=0.2), hidden_size=D).train()
    bn.alpha = 0.5
    hidden = torch.randn(*visual.shape, D, requires_grad=True)
    bn(hidden, visual)
    return bn, hidden


@pytest.mark.parametrize("prior", ["F", "L"])
def test_loss_is_ce_plus_beta_weighted_token_means(prior):
    visual, attention, labels, query = _batch()
    bn, _ = _forward(prior, visual)
    ce = torch.tensor(2.5)
    out = vittle_loss(ce, bn, labels, attention)
    kl_v = torch.stack([bn.last_kl_v[0, i] for i in (2, 3, 4)]).mean()
    kl_t = torch.stack([bn.last_kl_t[r, c] for r, c in query]).mean()
    torch.testing.assert_close(out.kl_v, kl_v)
    torch.testing.assert_close(out.kl_t, kl_t)
    torch.testing.assert_close(out.loss, 2.5 + 0.3 * kl_v + 0.2 * kl_t)
    assert out.ce is ce and out.alpha == 0.5
    assert out.kl_v > 0 and out.kl_t > 0


def test_kl_t_ignores_response_targets_and_padding():
    visual, attention, labels, _ = _batch()
    bn, _ = _forward("F", visual)
    before = vittle_loss(torch.tensor(1.0), bn, labels, attention)
    # Blow up the KL at every response-target and padding position: KL_t must not move.
    excluded = (labels != -100) | (attention == 0)
    bn.last_kl_t = bn.last_kl_t.detach().masked_fill(excluded, 1e6)
    after = vittle_loss(torch.tensor(1.0), bn, labels, attention)
    assert torch.equal(before.kl_t.detach(), after.kl_t)
    # ...while a query position does count.
    bn.last_kl_t[1, 0] = 1e6
    assert vittle_loss(torch.tensor(1.0), bn, labels, attention).kl_t > 1e4


def test_text_only_batch_gives_zero_kl_v_and_no_nan():
    _, attention, labels, _ = _batch()
    visual = torch.zeros(2, 8, dtype=torch.bool)
    bn, hidden = _forward("L", visual)
    out = vittle_loss(torch.tensor(1.0, requires_grad=True), bn, labels, attention)
    assert out.kl_v.item() == 0.0 and out.kl_t > 0
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in bn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert torch.isfinite(hidden.grad).all()


def test_no_query_tokens_gives_zero_kl_t():
    visual, attention, _, _ = _batch()
    bn, _ = _forward("F", visual)
    labels = torch.full((2, 8), 3)  # every position is a target
    out = vittle_loss(torch.tensor(1.0), bn, labels, attention)
    assert out.kl_t.item() == 0.0 and torch.isfinite(out.loss)


def test_no_attention_mask_means_no_padding():
    visual, _, labels, _ = _batch()
    bn, _ = _forward("F", visual)
    out = vittle_loss(torch.tensor(0.0), bn, labels, None)
    text_query = (labels == -100) & ~visual
    torch.testing.assert_close(out.kl_t, bn.last_kl_t[text_query].mean())


def test_eval_mode_and_no_bottleneck_return_ce():
    visual, attention, labels, _ = _batch()
    bn, hidden = _forward("F", visual)
    bn.eval()
    bn(hidden, visual)
    ce = torch.tensor(1.7)
    out = vittle_loss(ce, bn, labels, attention)
    assert out.loss is ce and out.kl_v.item() == 0.0 and out.kl_t.item() == 0.0
    assert out.alpha == bn.config.alpha_end
    none = vittle_loss(ce, None, labels, attention)
    assert none.loss is ce and none.kl_v.item() == 0.0


def test_labels_that_do_not_line_up_are_an_error():
    visual, attention, labels, _ = _batch()
    bn, _ = _forward("F", visual)
    with pytest.raises(ModelError, match="labels"):
        vittle_loss(torch.tensor(1.0), bn, labels[:, 1:], attention)
