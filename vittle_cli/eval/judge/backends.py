"""Judge backends: an OpenAI-compatible chat-completions endpoint, or a local Hugging Face causal LM.

    --judge gpt-4o                                    OpenAI (key from $OPENAI_API_KEY)
    --judge gpt-4o --judge-url http://127.0.0.1:8000/v1   vLLM / SGLang / Ollama / any compatible server
    --judge azure:DEPLOYMENT --judge-url https://NAME.openai.azure.com   Azure OpenAI ($AZURE_OPENAI_API_KEY)
    --judge hf:Qwen/Qwen2.5-7B-Instruct               local model through transformers, batched, greedy

API keys are read from the environment when the client is built and passed to it only: they never enter a
judge's id, the judgments cache, results.json or a log line (error texts are scrubbed of them too).
Retries with exponential backoff on 429, 5xx, timeouts and dropped connections are the `openai` client's
own (it honours Retry-After); vittle sets how many and the per-request timeout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from vittle_cli.errors import UsageError, VittleError
from vittle_cli.eval.judge.prompt import SYSTEM_PROMPT

OPENAI_URL = "https://api.openai.com/v1"
MAX_TOKENS = 1024  # the reference scripts' --max-tokens

OnReply = Callable[[int, str], None]


class JudgeError(VittleError):
    """The judge gave no answer (after all retries), or could not be started."""


@dataclass
class JudgeOptions:
    """How to reach and drive the judge (CLI: --judge-url, --judge-key-env, --judge-timeout, ...)."""

    url: str | None = None
    key_env: str | None = None
    timeout: float = 120.0
    max_retries: int = 6
    concurrency: int = 8
    max_tokens: int = MAX_TOKENS
    batch_size: int = 8
    device: str = "cpu"
    api_version: str | None = None


class OpenAIJudge:
    """Chat completions at temperature 0 through the `openai` client, `concurrency` requests at a time."""

    default_runs = 3  # servers are not deterministic even at temperature 0

    def __init__(self, model: str, options: JudgeOptions, *, azure: bool = False):
        self.model, self.options, self.azure = model, options, azure
        self.url = options.url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
        if azure and not options.url:
            raise UsageError("--judge azure:DEPLOYMENT needs --judge-url https://<resource>.openai.azure.com")
        default_env = "AZURE_OPENAI_API_KEY" if azure else "OPENAI_API_KEY"
        self.key_env = options.key_env or default_env
        self._key = os.environ.get(self.key_env) or None
        if self._key is None and (azure or self.url.rstrip("/") == OPENAI_URL):
            raise UsageError(f"judge {self.id} needs an API key: set the environment variable {self.key_env}")
        self._client = None

    @property
    def id(self) -> str:
        """What the judgments depend on: the endpoint and the model (never the key)."""
        kind = "azure" if self.azure else "openai"
        return f"{kind}:{self.model}@{self.url.rstrip('/')}"

    def _make_client(self):
        try:
            import openai
        except ImportError:
            raise UsageError(
                "API judges need the openai package: pip install 'vittle[judge]' (or pip install openai)"
            ) from None
        common = dict(api_key=self._key or "none", timeout=self.options.timeout)
        common["max_retries"] = self.options.max_retries
        if self.azure:
            version = self.options.api_version or os.environ.get("OPENAI_API_VERSION", "2024-10-21")
            return openai.AzureOpenAI(azure_endpoint=self.url, api_version=version, **common)
        return openai.OpenAI(base_url=self.url, **common)

    def _ask(self, prompt: str, system: str) -> str:
        response = self._client.chat.completions.create(
            model=self.model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            temperature=0.0,
            max_tokens=self.options.max_tokens,
        )
        return response.choices[0].message.content or ""

    def complete(self, prompts: Sequence[str], on_reply: OnReply, system: str = SYSTEM_PROMPT) -> None:
        """Ask for every prompt (after `system`); `on_reply(index, reply)` runs (in this thread) as each reply arrives.

        Raises:
            JudgeError: a request failed after all retries; replies already handed to on_reply are kept.
        """
        if not prompts:
            return
        if self._client is None:
            self._client = self._make_client()
        with ThreadPoolExecutor(max_workers=max(1, self.options.concurrency)) as pool:
            pending = {pool.submit(self._ask, p, system): i for i, p in enumerate(prompts)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                failed = [f for f in done if f.exception() is not None]
                for future in done:  # keep every reply that arrived before raising for a failure
                    index = pending.pop(future)
                    if future.exception() is None:
                        on_reply(index, future.result())
                if failed:
                    for other in pending:
                        other.cancel()
                    raise JudgeError(
                        f"judge {self.id} gave no answer after {self.options.max_retries} retries "
                        f"({self._describe(failed[0].exception())}); judgments made so far are kept"
                    ) from None

    def _describe(self, error: BaseException) -> str:
        status = getattr(error, "status_code", None)
        text = f"{type(error).__name__}" + (f" HTTP {status}" if status else "")
        if status in (401, 403):
            return f"{text}: check the key in ${self.key_env}"
        message = re.sub(r"\s+", " ", str(error))[:200]
        if self._key:
            message = message.replace(self._key, "***")
        return f"{text}: {re.sub(r'sk-[A-Za-z0-9_*-]+', '***', message)}"


class HFJudge:
    """A local causal LM: batched, left-padded, greedy; the chat template when the tokenizer has one."""

    default_runs = 1  # greedy decoding on one machine repeats itself

    def __init__(self, name: str, options: JudgeOptions):
        self.name, self.options = name, options
        self._model = self._tokenizer = None

    @property
    def id(self) -> str:
        return f"hf:{self.name}"

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.name)
            self._model = AutoModelForCausalLM.from_pretrained(self.name).to(self.options.device).eval()
        except (OSError, ValueError) as e:
            raise JudgeError(f"cannot load the judge model {self.name!r}: {str(e).splitlines()[0]}") from None
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token

    def render(self, prompt: str, system: str = SYSTEM_PROMPT) -> str:
        """The judge's input text: its chat template with the system and user turns, or both joined."""
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{system}\n\n{prompt}"

    def complete(self, prompts: Sequence[str], on_reply: OnReply, system: str = SYSTEM_PROMPT) -> None:
        import torch

        if not prompts:
            return
        if self._model is None:
            self._load()
        tok, size = self._tokenizer, max(1, self.options.batch_size)
        for start in range(0, len(prompts), size):
            texts = [self.render(p, system) for p in prompts[start : start + size]]
            batch = tok(texts, return_tensors="pt", padding=True).to(self.options.device)
            with torch.inference_mode():
                out = self._model.generate(
                    **batch,
                    do_sample=False,
                    max_new_tokens=self.options.max_tokens,
                    pad_token_id=tok.pad_token_id,
                )
            new = out[:, batch["input_ids"].shape[1] :]
            for offset, reply in enumerate(tok.batch_decode(new, skip_special_tokens=True)):
                on_reply(start + offset, reply.strip())


def make_judge(spec: str, options: JudgeOptions | None = None):
    """A judge from its --judge spec: 'hf:NAME_OR_PATH', 'azure:DEPLOYMENT' or an API model name."""
    options = options or JudgeOptions()
    spec = (spec or "").strip()
    if not spec:
        raise UsageError("--judge is empty; give an API model name (gpt-4o), azure:DEPLOYMENT or hf:NAME")
    if spec.startswith("hf:"):
        return HFJudge(spec[3:], options)
    if spec.startswith("azure:"):
        return OpenAIJudge(spec[6:], options, azure=True)
    return OpenAIJudge(spec.removeprefix("openai:"), options)
