"""Will it fit? Per-device GPU memory of a training run, by arithmetic from the model's shapes and the recipe.

No torch and no weights: `vittle train --dry-run` prints this plan for a 13B recipe in a second. Bytes are
counted per device, as the sum of every part at once (an upper bound: gradients and the activations' peak
do not quite coincide). docs/performance.md ("Memory plan") explains each formula; in short:

Weights, by dtype (w = 2 bytes for bf16/fp16 weights, 4 for fp32):
- full / LoRA: every parameter at w. peft keeps a frozen original beside each `modules_to_save` copy
  (bottleneck; projector when it trains), so those count twice. LoRA adapters are float32 (peft casts them up).
- QLoRA: the decoder's linears at bits/8 + quantisation constants (NF4 with double quantisation:
  4.127 bits per parameter, the QLoRA paper's figure); peft's prepare_model_for_kbit_training turns every
  other parameter (vision tower, projector, embeddings, norms, lm_head, and so the bottleneck) into float32.
- DeepSpeed with bf16/fp16 casts every parameter to 16 bits (2 bytes).

Trainable parameters without DeepSpeed (the Trainer's optimizer on the parameters as they are):
gradients w, optimizer states S (torch AdamW: 2w; bitsandbytes 32-bit: 8; 8-bit: 2; Adafactor, SGD: ~0),
plus one state-sized temporary for the foreach AdamW / Adafactor step, plus DDP's gradient buckets (w) when
several processes train without DeepSpeed.

Under DeepSpeed ZeRO (G = world size, S as above for fp32 master weights), DeepSpeed's own accounting
(deepspeed.runtime.zero estimate_zero2/3_model_states_mem_needs):
- ZeRO-2: 16-bit weights replicated (2 per parameter); per trained parameter (2 + 4 + 4 + S) / G:
  16-bit and fp32 gradients, fp32 master weight, optimizer states. Offloaded optimizer: 2 per parameter only.
  ZeRO-1 (no estimator in DeepSpeed) keeps all 16-bit gradients: 2 + (4 + 4 + S) / G.
- ZeRO-3: everything partitioned: frozen 2 / G, trained (2 + 4 + 4 + S) / G, plus 4 x the largest
  layer's parameters (the gathered working set). Offloaded optimizer: 2 / G per parameter + 4 x largest;
  offloaded parameters too: 4 x largest only.

Activations (bytes per token of a micro-batch of B samples x T tokens, 16-bit compute; d = hidden,
i = MLP width, V = vocabulary, L = decoder layers):
- one decoder layer keeps 26 d + 8 i (RMSNorm float32 inputs, q/k/v, rotated q/k, attention output,
  SwiGLU gate/up/product; SDPA keeps no score matrix); LoRA with dropout adds 3 bytes per input element of
  each adapted linear (the dropout's 16-bit output and CUDA's bool mask).
- autocast's 16-bit copies of float32 weights: 2 bytes per trained float32 parameter (+ QLoRA's lm_head).
- gradient checkpointing: L x 2d (each layer's input) + one layer recomputed; otherwise L x one layer.
- final norm 6 d; the bottleneck's two posterior nets, sampling and float32 KL 22 d; the loss's logits
  12 V (float32 upcast, log-softmax and its gradient).
  (tests/unit/test_memory_activations.py checks the layer, checkpointing, LoRA and bottleneck terms against
  the tensors autograd really saves.)
- projector (when it trains): 2 d_v + 4 d per image token; a trained vision tower: 16 d_v + 6 i_v per
  image token and layer (checkpointed like the decoder).
- plain fp32 compute (train.precision=fp32) doubles all but the logits term.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vittle_cli.train.model_shapes import ModelShapes, bottleneck_params

GIB = 1024**3
# Common GPU memory sizes (GB, as sold), for "fits on" without a GPU at hand.
CARD_SIZES_GB = (16, 24, 40, 48, 80, 141)
# Not for tensors: the CUDA context and kernels (~0.75 GiB) and allocator fragmentation (~10%).
CONTEXT_BYTES = int(0.75 * GIB)
FRAGMENTATION = 0.10
# Bits per quantised weight, quantisation constants included (QLoRA paper, section 3: a float32 absmax per
# 64 weights is 0.5 bits; double quantisation makes it 8/64 + 32/(64*256) = 0.127 bits).
QUANT_BITS = {
    (4, True): 4 + 8 / 64 + 32 / (64 * 256),
    (4, False): 4 + 32 / 64,
    (8, True): 8.0,
    (8, False): 8.0,
}


def optimizer_state_bytes(optimizer: str, weight_bytes: int) -> float:
    """Bytes of optimizer state per trained parameter whose weight takes `weight_bytes`."""
    if optimizer in ("adamw_torch", "adamw_torch_fused"):
        return 2 * weight_bytes  # exp_avg and exp_avg_sq in the parameter's dtype
    if optimizer == "paged_adamw_32bit":
        return 8.0
    if optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        return 2.0  # two int8 moments (+ one float32 absmax per 2048 values, ~0.004)
    if optimizer in ("adafactor", "sgd"):
        return 0.0  # factored second moment (rows + cols per matrix), no momentum
    raise ValueError(f"unknown optimizer {optimizer!r}")


def optimizer_temp_bytes(optimizer: str, weight_bytes: int) -> float:
    """Transient bytes per trained parameter during the optimizer step (foreach AdamW's sqrt(v) copy,
    Adafactor's update)."""
    return float(weight_bytes) if optimizer in ("adamw_torch", "adafactor") else 0.0


@dataclass(frozen=True)
class PlanSettings:
    """What of the recipe (and launch) decides memory."""

    mode: str = "full"  # full | lora | qlora
    weight_bytes: int = 2
    train_vision_tower: bool = False
    train_projector: bool = True
    train_language_model: bool = True
    bottleneck: bool = True
    learnable_prior: bool = False
    lora_r: int = 128
    lora_alpha: int = 256
    lora_targets: tuple[str, ...] = ("language_model",)
    lora_modules: tuple[str, ...] | None = None
    lora_dropout: float = 0.05
    qlora_bits: int = 4
    qlora_double_quant: bool = True
    optimizer: str = "adamw_torch"
    zero_stage: int = 0
    offload_optimizer: bool = False
    offload_params: bool = False
    world_size: int = 1
    batch: int = 1
    accumulation: int = 1
    seq_len: int = 2048
    images_per_sample: int = 1
    gradient_checkpointing: bool = True
    compute_bytes: int = 2  # 2 under bf16/fp16 mixed precision, 4 in plain fp32

    @classmethod
    def from_recipe(cls, recipe, ds_config: dict | None = None, world_size: int = 1) -> PlanSettings:
        t, m = recipe.train, recipe.model
        mode = "qlora" if t.qlora.enabled else "lora" if t.lora.enabled else "full"
        if m.dtype != "auto":
            weight_bytes = 4 if m.dtype == "float32" else 2
        else:  # model/load.py resolve_dtype: bf16 -> bfloat16, fp16/fp32 -> float32, auto -> bf16 on a GPU
            weight_bytes = 4 if t.precision in ("fp16", "fp32") else 2
        zero = (ds_config or {}).get("zero_optimization", {}) or {}

        def offload(key: str) -> bool:
            return (zero.get(key) or {}).get("device", "none") not in ("none", None)

        return cls(
            mode=mode,
            weight_bytes=weight_bytes,
            # auto = bf16 where CUDA supports it: the plan is for the GPU run
            compute_bytes=4 if t.precision == "fp32" else 2,
            train_vision_tower=m.train_vision_tower,
            train_projector=m.train_projector,
            train_language_model=m.train_language_model,
            bottleneck=recipe.bottleneck.enabled,
            learnable_prior=recipe.bottleneck.prior == "L",
            lora_r=t.lora.r,
            lora_alpha=t.lora.alpha,
            lora_targets=tuple(t.lora.targets),
            lora_modules=tuple(t.lora.modules) if t.lora.modules else None,
            lora_dropout=t.lora.dropout,
            qlora_bits=t.qlora.bits,
            qlora_double_quant=t.qlora.double_quant,
            optimizer=t.optimizer,
            zero_stage=int(zero.get("stage", 0)) if ds_config else 0,
            offload_optimizer=offload("offload_optimizer"),
            offload_params=offload("offload_param"),
            world_size=world_size,
            batch=t.per_device_batch_size,
            accumulation=t.gradient_accumulation_steps,
            seq_len=recipe.data.max_length,
            gradient_checkpointing=t.gradient_checkpointing,
        )


@dataclass(frozen=True)
class ParamGroup:
    """Parameters that share a dtype and a trainable flag."""

    name: str
    count: int
    weight_bytes: float
    trainable: bool


def lora_params(shapes: ModelShapes, s: PlanSettings) -> int:
    """r x (in + out) for every linear LoRA wraps (model/prepare.py lora_target_modules)."""
    per_layer = {}
    if "language_model" in s.lora_targets or s.lora_modules:
        wanted = s.lora_modules or tuple(shapes.text.linear_shapes())
        per_layer.update({k: v for k, v in shapes.text.linear_shapes().items() if k in wanted})
    total = shapes.text.layers * sum(a + b for a, b in per_layer.values())
    if "vision_tower" in s.lora_targets:
        total += shapes.vision.layers * sum(a + b for a, b in shapes.vision.linear_shapes().values())
    if "projector" in s.lora_targets:
        total += sum(a + b for a, b in shapes.projector_linear_shapes().values())
    return s.lora_r * total


def parameter_groups(shapes: ModelShapes, s: PlanSettings) -> list[ParamGroup]:
    """The model's parameters by (dtype, trainable), as load_model_for_recipe leaves them."""
    t, w = shapes.text, float(s.weight_bytes)
    deepspeed_16bit = s.zero_stage > 0
    fp = 2.0 if deepspeed_16bit else (4.0 if s.mode == "qlora" else w)  # non-quantised parameters
    adapter = 2.0 if deepspeed_16bit else 4.0
    full = s.mode == "full"
    groups = []

    def part(name: str, count: int, trains: bool, lora_target: str | None = None) -> None:
        if full or not trains:
            groups.append(ParamGroup(name, count, fp, trains and full))
        elif lora_target in s.lora_targets:  # adapters carry it; the base stays frozen
            groups.append(ParamGroup(name, count, fp, False))
        else:  # peft modules_to_save: a trained copy beside the frozen original
            groups.append(ParamGroup(name, count, fp, True))
            groups.append(ParamGroup(f"{name} (frozen original)", count, fp, False))

    part("vision tower", shapes.vision.params(), s.train_vision_tower, "vision_tower")
    part("projector", shapes.projector_params(), s.train_projector, "projector")
    if s.mode == "qlora":
        bits = QUANT_BITS[(s.qlora_bits, s.qlora_double_quant)]
        groups.append(ParamGroup("decoder linears (quantised)", t.linear_params(), bits / 8, False))
    else:
        groups.append(ParamGroup("decoder linears", t.linear_params(), fp, full and s.train_language_model))
    rest = t.other_params() + t.lm_head_params()
    groups.append(ParamGroup("embeddings, norms, lm_head", rest, fp, full and s.train_language_model))
    if s.bottleneck:
        part("bottleneck", bottleneck_params(t.hidden, s.learnable_prior), True, "bottleneck")
    if not full:
        groups.append(ParamGroup("LoRA adapters", lora_params(shapes, s), adapter, True))
    return groups


def model_state_rows(
    groups: list[ParamGroup], s: PlanSettings, largest_layer: int
) -> tuple[dict[str, float], float]:
    """Per-device bytes of weights / gradients / optimizer states (/ step temporaries, DDP buckets) of
    `groups`, and the bytes offloaded to CPU memory. `largest_layer`: parameters of the largest module."""
    weights = sum(g.count * g.weight_bytes for g in groups)
    trained = [g for g in groups if g.trainable]
    n_trained = sum(g.count for g in trained)
    G = s.world_size
    if s.zero_stage == 0:
        grads = sum(g.count * g.weight_bytes for g in trained)
        states = sum(g.count * optimizer_state_bytes(s.optimizer, int(g.weight_bytes)) for g in trained)
        temps = sum(g.count * optimizer_temp_bytes(s.optimizer, int(g.weight_bytes)) for g in trained)
        rows = {"weights": weights, "gradients": grads, "optimizer states": states, "optimizer step": temps}
        if G > 1:
            rows["DDP gradient buckets"] = grads
        return rows, 0.0
    S = optimizer_state_bytes(s.optimizer, 4)  # DeepSpeed keeps fp32 master weights
    largest = 4.0 * largest_layer
    offloaded = n_trained * (4 + 4 + S)
    if s.zero_stage in (1, 2):
        if s.offload_optimizer:
            return {"weights": weights, "gradients": 0.0, "optimizer states": 0.0}, offloaded
        # ZeRO-1 partitions only the optimizer: every rank holds all 16-bit gradients
        grads16 = n_trained * 2 / (G if s.zero_stage == 2 else 1)
        return {
            "weights": weights,
            "gradients": grads16 + n_trained * 4 / G,
            "optimizer states": n_trained * (4 + S) / G,
        }, 0.0
    if s.offload_params:
        return {"weights": largest, "gradients": 0.0, "optimizer states": 0.0}, offloaded + weights
    if s.offload_optimizer:
        return {"weights": weights / G + largest, "gradients": 0.0, "optimizer states": 0.0}, offloaded
    return {
        "weights": weights / G + largest,
        "gradients": n_trained * 4 / G,
        "optimizer states": n_trained * (4 + S) / G,
    }, 0.0


def activation_rows(shapes: ModelShapes, s: PlanSettings) -> dict[str, float]:
    """Activation bytes per device for one micro-batch (formulas in the module docstring)."""
    t, v = shapes.text, shapes.vision
    d, i, L = t.hidden, t.intermediate, t.layers
    tokens = s.batch * s.seq_len
    layer = 26 * d + 8 * i
    lm_adapted = s.mode != "full" and ("language_model" in s.lora_targets or s.lora_modules)
    if lm_adapted and s.lora_dropout > 0:
        # Per input element of each adapted linear: the dropout's 16-bit output (2) and CUDA's bool mask (1);
        # without dropout the adapter's matmul saves the very input the base layer saves.
        wanted = s.lora_modules or tuple(t.linear_shapes())
        layer += 3 * sum(a for k, (a, _) in t.linear_shapes().items() if k in wanted)
    decoder = (L * 2 * d + layer) if s.gradient_checkpointing else L * layer
    scale = s.compute_bytes / 2  # the per-token counts above are for 16-bit compute
    rows = {
        "activations: decoder": scale * tokens * (decoder + 6 * d),
        "activations: logits and loss": tokens * 12.0 * t.vocab,
    }
    if s.bottleneck:
        rows["activations: bottleneck"] = scale * tokens * 22.0 * d
    image_tokens = s.batch * s.images_per_sample
    vision = 0.0
    if s.train_projector:
        vision += image_tokens * shapes.image_tokens * (2 * v.hidden + 4 * d)
    if s.train_vision_tower:
        per_layer = 16 * v.hidden + 6 * v.intermediate
        per_token = (
            (v.layers * 2 * v.hidden + per_layer) if s.gradient_checkpointing else v.layers * per_layer
        )
        vision += image_tokens * v.patches * per_token
    if vision:
        rows["activations: projector / vision tower"] = scale * vision
    return rows


def autocast_copy_bytes(shapes: ModelShapes, groups: list[ParamGroup], s: PlanSettings) -> float:
    """16-bit copies autocast makes of float32 weights and keeps through the forward: cached for trained
    leaves (LoRA adapters, and under QLoRA the bottleneck and projector), saved for backward for the frozen
    float32 lm_head of QLoRA. None in plain fp32 compute or under DeepSpeed (all weights 16-bit there)."""
    if s.compute_bytes != 2 or s.zero_stage:
        return 0.0
    trained_fp32 = sum(g.count for g in groups if g.trainable and g.weight_bytes == 4)
    lm_head = shapes.text.lm_head_params() if s.mode == "qlora" else 0
    return 2.0 * (trained_fp32 + lm_head)


@dataclass
class MemoryPlan:
    """Per-device memory of one training process, with what it was computed from."""

    rows: dict[str, float]
    cpu_bytes: float
    settings: PlanSettings
    shapes_source: str
    capacity: int | None = None  # bytes of the GPU it is compared with
    device: str | None = None
    deepspeed_estimate: float | None = None  # DeepSpeed's own model-state figure, where it applies
    suggestions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return float(sum(self.rows.values()))

    @property
    def fits(self) -> bool | None:
        return None if self.capacity is None else self.total <= usable_bytes(self.capacity)

    def fits_cards(self) -> list[int]:
        """The common card sizes (GB) this plan fits on."""
        return [gb for gb in CARD_SIZES_GB if self.total <= usable_bytes(gb * 10**9)]


def usable_bytes(capacity: int) -> float:
    """What tensors may use of a GPU with `capacity` bytes (context and fragmentation set aside)."""
    return capacity * (1 - FRAGMENTATION) - CONTEXT_BYTES


def plan_memory(shapes: ModelShapes, s: PlanSettings, capacity: int | None = None) -> MemoryPlan:
    """The memory plan of `s` on a model of `shapes`, compared with `capacity` bytes when given."""
    groups = parameter_groups(shapes, s)
    rows, cpu = model_state_rows(groups, s, shapes.largest_layer_params())
    rows = {k: v for k, v in rows.items() if v} | activation_rows(shapes, s)
    if copies := autocast_copy_bytes(shapes, groups, s):
        rows["16-bit copies of float32 weights"] = copies
    plan = MemoryPlan(rows=rows, cpu_bytes=cpu, settings=s, shapes_source=shapes.source, capacity=capacity)
    return plan
