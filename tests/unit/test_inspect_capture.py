"""Hidden-state capture for `vittle inspect embeddings`: right layer, right tokens, before/after the bottleneck."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vittle_cli.model.attach import attach_bottleneck, image_token_ids
from vittle_cli.model.bottleneck import VittleConfig
from vittle_cli.model.capture import Query, capture_layers, pooled_states


def _queries(n=3):
    return [
        Query(
            str(i),
            Image.new("RGB", (48, 48), (40 * i, 200 - 30 * i, 90)),
            "Is there a red circle?" + " ok" * i,
        )
        for i in range(n)
    ]


def _randomise(bn):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in bn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def _manual_means(model, processor, queries, layer):
    """Reference: output_hidden_states[layer + 1], averaged by hand per sample (no padding: one at a time)."""
    vis, txt = [], []
    ids = image_token_ids(model)
    for q in queries:
        from vittle_cli.model.capture import encode_batch

        batch = encode_batch(processor, [q], "cpu")
        with torch.no_grad():
            hs = model(**batch, output_hidden_states=True, use_cache=False).hidden_states[layer + 1][0]
        visual = torch.isin(batch["input_ids"][0], torch.tensor(ids))
        vis.append(hs[visual].mean(0).numpy())
        txt.append(hs[~visual].mean(0).numpy())
    return np.stack(vis), np.stack(txt)


def test_plain_model_reads_default_layer_and_before_equals_after(tiny_llava):
    model, processor = tiny_llava
    layers, active = capture_layers(model, None)
    assert layers == {"visual": 6, "text": 6} and active == {"visual": False, "text": False}
    got = pooled_states(model, processor, _queries(), layers, active, batch_size=2)
    vis, txt = _manual_means(model, processor, _queries(), 6)
    np.testing.assert_allclose(got[("visual", "after")], vis, atol=1e-5)
    np.testing.assert_allclose(got[("text", "after")], txt, atol=1e-5)
    np.testing.assert_array_equal(got[("visual", "before")], got[("visual", "after")])


def test_bottleneck_after_is_what_the_next_layer_sees(tiny_llava):
    model, processor = tiny_llava
    qs = _queries()
    _randomise(attach_bottleneck(model, VittleConfig(layer_v=4, layer_t=5)))
    layers, active = capture_layers(model, None)
    assert layers == {"visual": 4, "text": 5} and active == {"visual": True, "text": True}
    got = pooled_states(model, processor, qs, layers, active, batch_size=3)
    # output_hidden_states records the post-bottleneck state (the hook is prepended)
    vis4, _ = _manual_means(model, processor, qs, 4)
    _, txt5 = _manual_means(model, processor, qs, 5)
    np.testing.assert_allclose(got[("visual", "after")], vis4, atol=1e-5)
    np.testing.assert_allclose(got[("text", "after")], txt5, atol=1e-5)
    assert np.abs(got[("visual", "after")] - got[("visual", "before")]).max() > 1e-3
    assert np.abs(got[("text", "after")] - got[("text", "before")]).max() > 1e-3


def test_visual_before_matches_base_model(tiny_llava):
    model, processor = tiny_llava
    qs = _queries(2)
    base = pooled_states(model, processor, qs, {"visual": 6, "text": 6}, {"visual": False, "text": False})
    _randomise(attach_bottleneck(model, VittleConfig()))
    got = pooled_states(model, processor, qs, *capture_layers(model, None))
    # nothing before layer 6 changed, so the bottleneck's input is the base model's layer-6 output
    np.testing.assert_allclose(got[("visual", "before")], base[("visual", "after")], atol=1e-5)
    np.testing.assert_allclose(got[("text", "before")], base[("text", "after")], atol=1e-5)


def test_batching_and_padding_do_not_change_results(tiny_llava):
    model, processor = tiny_llava
    qs = _queries(3)
    layers, active = capture_layers(model, None)
    one = pooled_states(model, processor, qs, layers, active, batch_size=1)
    four = pooled_states(model, processor, qs, layers, active, batch_size=4)
    for key in one:
        np.testing.assert_allclose(one[key], four[key], atol=1e-4)


def test_explicit_layer_and_range_check(tiny_llava):
    from vittle_cli.errors import UsageError

    model, _ = tiny_llava
    attach_bottleneck(model, VittleConfig())
    assert capture_layers(model, 2) == ({"visual": 2, "text": 2}, {"visual": False, "text": False})
    assert capture_layers(model, -2)[0] == {"visual": 6, "text": 6}
    assert capture_layers(model, -2)[1] == {"visual": True, "text": True}
    with pytest.raises(UsageError, match="out of range"):
        capture_layers(model, 8)


def test_text_only_query_has_no_visual_row(tiny_llava):
    model, processor = tiny_llava
    qs = [Query("t", None, "Name a colour."), *_queries(1)]
    got = pooled_states(model, processor, qs, *capture_layers(model, None))
    assert np.isnan(got[("visual", "after")][0]).all() and np.isfinite(got[("visual", "after")][1]).all()
    assert np.isfinite(got[("text", "after")]).all()
