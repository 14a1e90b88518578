"""The external encoders EMID is measured with, as the authors' pipeline uses them
(github.com/deeplearning-wisc/mllmshift-emi, main.py, class EMI):

* images: a CLIP vision tower (default openai/clip-vit-base-patch32), last hidden state, mean over the patch
  tokens without CLS;
* texts (query, model answer, reference answer): an XLM-RoBERTa model (default xlm-roberta-base), the
  embedding-layer output hidden_states[0], mean over the non-pad tokens without the first (<s>), inputs cut
  at 512 tokens;
* every vector L2-normalised.

Loaded by hub id or local path (`from_pretrained`); nothing here downloads unless the name is a hub id the
user asked for. The models load on first use, so a rerun whose embeddings are all cached loads nothing;
`check_emid_sources` refuses a missing local folder or estimator file before any work starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from vittle_cli.errors import ModelError, UsageError

if TYPE_CHECKING:  # numpy loads with the encoders: the CLI imports this module for its defaults
    import numpy as np

DEFAULT_VISION_ENCODER = "openai/clip-vit-base-patch32"
DEFAULT_TEXT_ENCODER = "xlm-roberta-base"
MAX_TEXT_TOKENS = 512
DEFAULT_CLUB_STEPS = 2000  # CLUB fitting steps (model/emid.py); here, where the CLI can import it cheaply
# A hub id: `name` or `org/name` (xlm-roberta-base has no org); anything else that does not exist locally is
# a path the user mistyped.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def check_emid_sources(vision: str, text: str, club: str | None = None) -> None:
    """Refuse, before any work, an encoder that is neither a hub id nor a model folder, and a missing --club.

    Raises:
        UsageError: a local path that does not exist, is a file, or holds no config.json; --club not a file.
    """
    for flag, given in (("--vision-encoder", vision), ("--text-encoder", text)):
        path = Path(given).expanduser()
        if path.is_dir() and not (path / "config.json").is_file():
            raise UsageError(f"{flag} {given} holds no config.json; pass a model folder or a hub id")
        if path.is_file() or (
            not path.exists() and (given.startswith((".", "/", "~")) or not _HUB_ID.match(given))
        ):
            raise UsageError(
                f"{flag} {given}: no such model folder; pass a hub id (org/name) or a model folder"
            )
    if club is not None and not Path(club).is_file():
        raise UsageError(f"--club {club}: no such file (a .safetensors or a weights-only .pt state dict)")


class EmidEncoders:
    """A CLIP vision tower and a text encoder with their processors, on one device, in eval mode; loaded on
    first use (`names` alone keys the embedding cache)."""

    def __init__(self, vision: str = DEFAULT_VISION_ENCODER, text: str = DEFAULT_TEXT_ENCODER,
                 device: str = "cpu"):  # fmt: skip
        self.names = {"vision": str(vision), "text": str(text)}
        self.device = device
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        vision, text, device = self.names["vision"], self.names["text"], self.device
        try:
            vmodel = AutoModel.from_pretrained(vision)
            self.image_processor = AutoImageProcessor.from_pretrained(vision)
            self.text_model = AutoModel.from_pretrained(text).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(text)
        except (OSError, ValueError) as e:
            raise ModelError(
                f"cannot load the EMID encoders ({vision}, {text}): {str(e).splitlines()[0]}; pass "
                "--vision-encoder / --text-encoder as a hub id or a local folder"
            ) from e
        # a full CLIPModel carries the tower as .vision_model; CLIPVisionModel is a wrapper around it too
        self.vision_model = getattr(vmodel, "vision_model", vmodel).to(device).eval()
        self.tokenizer.padding_side = "right"  # the first position must be <s>, not padding
        self._loaded = True

    @property
    def dim(self) -> int:
        self._load()
        return int(self.text_model.get_input_embeddings().embedding_dim)

    def images(self, images: list, batch_size: int = 16) -> np.ndarray:
        """(n, d) mean of the last hidden state over patch tokens (CLS dropped), L2-normalised."""
        import numpy as np
        import torch

        self._load()
        out = []
        for start in range(0, len(images), batch_size):
            pix = self.image_processor(images=images[start : start + batch_size], return_tensors="pt")
            with torch.inference_mode():
                states = self.vision_model(pixel_values=pix["pixel_values"].to(self.device)).last_hidden_state
            out.append(_normalise(states[:, 1:, :].mean(dim=1)))
        return np.concatenate(out) if out else np.zeros((0, 0))

    def texts(self, texts: list[str], batch_size: int = 16) -> np.ndarray:
        """(n, d) mean of hidden_states[0] over non-pad tokens without the first, L2-normalised."""
        import numpy as np
        import torch

        self._load()
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True,
                                 truncation=True, max_length=MAX_TEXT_TOKENS).to(self.device)  # fmt: skip
            with torch.inference_mode():
                states = self.text_model(**enc, output_hidden_states=True).hidden_states[0]
            mask = enc["attention_mask"][:, 1:].unsqueeze(-1).to(states.dtype)
            # a one-token text has nothing after <s>: clamp keeps it a zero vector instead of NaN
            pooled = (states[:, 1:, :] * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            out.append(_normalise(pooled))
        return np.concatenate(out) if out else np.zeros((0, 0))


def _normalise(t) -> np.ndarray:
    import numpy as np
    import torch.nn.functional as F

    return F.normalize(t.float(), p=2, dim=-1).cpu().numpy().astype(np.float32)
