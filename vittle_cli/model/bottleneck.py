"""The Vittle bottleneck in pure torch (shared/METHOD.md §2-§4): posterior networks, priors, Gaussian KL,
straight-through log-variance clamp, sampling, interpolation and the alpha schedule.

Nothing here knows about Hugging Face; `attach.py` places the module inside a model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, ValidationError, field_validator
from torch import Tensor, nn

from vittle_cli.errors import ModelError
from vittle_cli.layout import VITTLE_CONFIG
from vittle_cli.recipe import BottleneckSection

FORMAT_VERSION = 1


class VittleConfig(BottleneckSection):
    """The bottleneck's hyperparameters: the recipe's `bottleneck` section (same fields, defaults and checks,
    inherited) without `enabled`, plus what attaching learns. Built from a recipe by `from_section` only;
    `attach_bottleneck` writes the resolved layers and the hidden size into the attached module's copy, which
    the alpha callback, dry-run, checkpoints and merge all read."""

    # Declared again only to pin it: a config exists only for a bottleneck that is on, and is not saved.
    enabled: Literal[True] = Field(default=True, exclude=True, description="Always true here.")
    hidden_size: int | None = Field(default=None, description="Width of h; filled in by attach_bottleneck.")
    format_version: int = Field(default=FORMAT_VERSION, description="vittle_config.json format.")

    def __init__(self, **fields: Any) -> None:
        try:
            super().__init__(**fields)
        except ValidationError as err:
            problems = [f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in err.errors()]
            raise ModelError("invalid bottleneck config: " + "; ".join(problems)) from None

    @field_validator("format_version")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value > FORMAT_VERSION:
            raise ValueError(
                f"format_version {value} is newer than this vittle understands ({FORMAT_VERSION}); upgrade vittle"
            )
        return value

    @classmethod
    def from_section(cls, section: BottleneckSection | dict[str, Any]) -> VittleConfig:
        """The config of a recipe's `bottleneck` section (a validated section, or its dict from config.yaml)."""
        fields = section if isinstance(section, dict) else section.model_dump()
        return cls(**{k: v for k, v in fields.items() if k != "enabled"})

    def replace(self, **changes: Any) -> VittleConfig:
        """A copy with `changes` applied (and checked)."""
        return type(self)(**{**self.model_dump(), **changes})

    def to_json(self) -> str:
        """The config as the JSON text of vittle_config.json."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> VittleConfig:
        """Parse vittle_config.json text.

        Raises:
            ModelError: the text is not a JSON object of known fields.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelError(f"{VITTLE_CONFIG} is not valid JSON ({err}); re-save the model") from None
        if not isinstance(data, dict):
            raise ModelError(f"{VITTLE_CONFIG} must hold a JSON object; re-save the model")
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise ModelError(
                f"{VITTLE_CONFIG} has unknown fields {unknown}; it was written by a newer vittle: upgrade vittle"
            )
        return cls(**data)

    @classmethod
    def read(cls, directory: str | Path) -> VittleConfig:
        """Load `directory/vittle_config.json`."""
        return cls.from_json((Path(directory) / VITTLE_CONFIG).read_text())

    def resolve_layers(self, n_layers: int) -> tuple[int, int]:
        """Non-negative (layer_v, layer_t) for a decoder of `n_layers` layers.

        layer_v None means round(0.75 * n_layers) (METHOD.md §2); layer_t None means layer_v; a
        negative index counts from the end.

        Raises:
            ModelError: an index outside the decoder, naming the valid range.
        """
        default = min(round(0.75 * n_layers), n_layers - 1)  # literally round(), as METHOD.md §2 writes it

        def resolve(name: str, value: int | None) -> int:
            if value is None:
                return default
            index = value + n_layers if value < 0 else value
            if not 0 <= index < n_layers:
                raise ModelError(
                    f"bottleneck.{name}={value} is out of range for a decoder with {n_layers} layers; "
                    f"use 0..{n_layers - 1} (or -{n_layers}..-1 from the end)"
                )
            return index

        layer_v = resolve("layer_v", self.layer_v)
        # Equal by default (METHOD.md §2): an unset text layer follows the visual one.
        return layer_v, layer_v if self.layer_t is None else resolve("layer_t", self.layer_t)


def gaussian_kl(
    mu: Tensor, logvar: Tensor, prior_mu: Tensor | None = None, prior_logvar: Tensor | None = None
) -> Tensor:
    """Elementwise KL( N(mu, exp(logvar)) || prior ) in float32, same shape as `mu` (METHOD.md §4).

    The prior is N(0, I) when `prior_mu`/`prior_logvar` are None, else N(prior_mu, exp(prior_logvar))
    (broadcast against `mu`). This is the correct form; the released reference code halves the log term.
    """
    mu, logvar = mu.float(), logvar.float()
    if prior_mu is None and prior_logvar is None:
        return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0)
    p_mu = torch.zeros_like(mu) if prior_mu is None else prior_mu.float()
    p_logvar = torch.zeros_like(mu) if prior_logvar is None else prior_logvar.float()
    return 0.5 * (p_logvar - logvar + (logvar.exp() + (mu - p_mu).square()) / p_logvar.exp() - 1.0)


def clamp_logvar_ste(logvar: Tensor, bound: float) -> Tensor:
    """Clamp the forward value to [-bound, bound] and pass the gradient straight through (as the reference)."""
    # `logvar - logvar.detach()` is exactly 0 in the forward, so the value is exactly the clamped one.
    return logvar.clamp(-bound, bound).detach() + (logvar - logvar.detach())


def alpha_at(step: int | float, total_steps: int, cfg: VittleConfig) -> float:
    """Interpolation weight alpha at optimizer step `step` of a run of `total_steps` steps.

    sigmoid: alpha_end * sigmoid(k * (s/T - t0)); linear: alpha_end * min(s/T, 1); constant: alpha_end.

    Raises:
        ValueError: total_steps < 1 (the caller must pass the real schedule length).
    """
    if cfg.schedule == "constant":
        return float(cfg.alpha_end)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1 to schedule alpha, got {total_steps}")
    progress = float(step) / float(total_steps)
    if cfg.schedule == "linear":
        return float(cfg.alpha_end) * min(max(progress, 0.0), 1.0)
    x = cfg.sigmoid_k * (progress - cfg.sigmoid_t0)
    return float(cfg.alpha_end) / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class TokenSplit:
    """Which flattened (B*T) positions are visual and which are text, computed once per model forward.

    Indexing with a boolean mask costs a host-device sync per use (the result's size is data-dependent); the
    hot path instead gathers rows with `index_select` and writes them back with `index_copy` using these
    ascending indices, which pick the same rows in the same order as the mask did (so values, noise draws
    and gradients are unchanged).
    """

    mask: Tensor  # (B, T) bool, True at visual positions
    visual_index: Tensor  # (N_v,) int64, ascending
    text_index: Tensor  # (N_t,) int64, ascending


def split_tokens(visual_mask: Tensor) -> TokenSplit:
    """The TokenSplit of a (B, T) visual mask: one host-device sync (the visual count) for both indices."""
    mask = visual_mask.to(torch.bool)
    flat = mask.reshape(-1)
    # Stable sort of "is text" puts visual positions first, each side in ascending position order.
    order = torch.argsort((~flat).to(torch.uint8), stable=True)
    n_visual = int(flat.sum())
    return TokenSplit(mask, order[:n_visual], order[n_visual:])


def _posterior_net(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 2 * d))


class VittleBottleneck(nn.Module):
    """Per-modality variational bottleneck on a decoder layer's hidden states.

    Train mode: z = mu + sigma * eps, h' = (1 - alpha) h + alpha z, and the per-token KL (float32, mean
    over hidden dims) is kept in `last_kl_v` / `last_kl_t` (B, T) for `vittle_loss`.
    Eval mode: h' = (1 - alpha_end) h + alpha_end mu, deterministic, no KL.
    """

    def __init__(self, config: VittleConfig, hidden_size: int | None = None):
        super().__init__()
        d = hidden_size if hidden_size is not None else config.hidden_size
        if d is None or d < 1:
            raise ModelError("VittleBottleneck needs hidden_size (the language model's hidden size)")
        self.config = config.replace(hidden_size=d)
        self.visual_net = _posterior_net(d)
        self.text_net = _posterior_net(d)
        if self.config.prior == "L":
            # Separate visual and text priors (METHOD.md §4), initialised to N(0, I).
            self.visual_prior_mu = nn.Parameter(torch.zeros(d))
            self.visual_prior_logvar = nn.Parameter(torch.zeros(d))
            self.text_prior_mu = nn.Parameter(torch.zeros(d))
            self.text_prior_logvar = nn.Parameter(torch.zeros(d))
        self.alpha: float = 0.0  # set by the trainer from alpha_at(); used in train mode only
        self.last_kl_v: Tensor | None = None
        self.last_kl_t: Tensor | None = None
        self.last_visual_mask: Tensor | None = None

    def reset_stats(self) -> None:
        """Forget the KL of the previous forward (called at the start of every model forward)."""
        self.last_kl_v = self.last_kl_t = self.last_visual_mask = None

    def _prior(self, modality: str) -> tuple[Tensor | None, Tensor | None]:
        if self.config.prior != "L":
            return None, None
        mu = getattr(self, f"{modality}_prior_mu")
        logvar = getattr(self, f"{modality}_prior_logvar")
        return mu, clamp_logvar_ste(logvar, self.config.logvar_clamp)

    def _transform(self, rows: Tensor, modality: str) -> tuple[Tensor, Tensor | None]:
        """New hidden rows (N, d) for one modality and, in train mode, their dim-mean KL (N,) in float32."""
        net = self.visual_net if modality == "visual" else self.text_net
        mu, logvar = net(rows).chunk(2, dim=-1)
        if not self.training:
            a = self.config.alpha_end
            return (1.0 - a) * rows + a * mu, None
        logvar = clamp_logvar_ste(logvar, self.config.logvar_clamp)
        eps = torch.randn_like(mu)  # on the device, in the compute dtype
        z = mu + torch.exp(0.5 * logvar) * eps
        new = (1.0 - self.alpha) * rows + self.alpha * z
        prior_mu, prior_logvar = self._prior(modality)
        kl = gaussian_kl(mu, logvar, prior_mu, prior_logvar).mean(dim=-1)
        return new, kl

    def forward(
        self,
        hidden: Tensor,
        visual_mask: Tensor | TokenSplit,
        *,
        apply_visual: bool = True,
        apply_text: bool = True,
    ) -> Tensor:
        """Transform `hidden` (B, T, d): visual rows (visual_mask True) by the visual net, the others by
        the text net. `visual_mask` may be a precomputed TokenSplit (the attach hooks pass one, computed once
        per model forward). `apply_visual`/`apply_text` pick the modalities handled at this layer (the two
        may sit on different layers).

        Both nets are called even when their selection is empty, so every parameter takes part in every
        step (ZeRO-3 ranks stay in step; an unused parameter would get no gradient hook).
        """
        split = visual_mask if isinstance(visual_mask, TokenSplit) else None
        mask = split.mask if split is not None else visual_mask
        if mask.shape != hidden.shape[:2]:
            raise ModelError(
                f"visual mask shape {tuple(mask.shape)} does not match hidden states "
                f"{tuple(hidden.shape[:2])}; the model was called without matching input_ids"
            )
        if split is None or split.visual_index.device != hidden.device:
            split = split_tokens(mask.to(device=hidden.device))
        if self.training:
            self.last_visual_mask = split.mask
        flat = hidden.reshape(-1, hidden.shape[-1])
        out = flat
        for modality, enabled, index in (
            ("visual", apply_visual, split.visual_index),
            ("text", apply_text, split.text_index),
        ):
            if not enabled:
                continue
            new_rows, kl = self._transform(flat.index_select(0, index), modality)
            out = out.index_copy(0, index, new_rows.to(hidden.dtype))
            if kl is not None:
                full = torch.zeros(flat.shape[0], dtype=torch.float32, device=hidden.device)
                full = full.index_copy(0, index, kl).view(hidden.shape[:2])
                if modality == "visual":
                    self.last_kl_v = full
                else:
                    self.last_kl_t = full
        return out.view(hidden.shape)

    def extra_repr(self) -> str:
        c = self.config
        return f"d={c.hidden_size}, prior={c.prior}, alpha_end={c.alpha_end}, beta_v={c.beta_v}, beta_t={c.beta_t}"
