"""What evaluation scores: a trained run (base + adapter), any HF causal LM zero-shot, any OpenAI-compatible model.

Each config in arastory/conf/system/ instantiates a spec whose `check()` is cheap (paths, API keys) and runs before
anything is generated; `open()` loads the model. Local systems generate in left-padded batches with transformers, or
with vLLM (`system.backend=vllm`, untested here: vLLM needs a GPU) and also measure perplexity of held-out stories.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

import torch
from omegaconf import DictConfig, OmegaConf

from arastory.errors import ConfigError
from arastory.plain import dict_config

if TYPE_CHECKING:
    from collections.abc import Sequence

    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from arastory.data.stored import AnyStory
    from arastory.evaluate.files import FileGenerator, FileSystem
    from arastory.llm import ChatClient

BACKENDS = ("hf", "vllm")


@dataclass
class Sampling:
    """Decoding settings shared by every system (`sampling.*` in arastory/conf/evaluate.yaml)."""

    max_new_tokens: int = 2048
    temperature: float = 0.7
    top_p: float = 0.95
    do_sample: bool = True
    seed: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def load_run_config(run_dir: str | Path) -> DictConfig:
    """A training run dir's saved config.yaml (one-line error when `run=` is not a finished run dir)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError("run", f"'{run_dir}' is not a training run dir (no config.yaml in it)")
    return dict_config(OmegaConf.load(run_dir / "config.yaml"))


def run_system_name(run_cfg: DictConfig) -> str:
    suffix = f"_{run_cfg.name}" if run_cfg.get("name") else ""
    return f"{run_cfg.strategy.name}-{run_cfg.dialect}{suffix}"


# ----------------------------------------------------------------------------------------------------------- specs
@dataclass
class RunSystem:
    """`system=run`: the run's base model (model/quant from its config.yaml) with its final adapter (adapter/)."""

    run_dir: str | None = None
    name: str | None = None
    backend: str = "hf"
    merge: bool = False  # vLLM only: merge the adapter into a bf16 copy of the base (never into 4-bit weights)
    batch_size: int = 8
    tensor_parallel_size: int = 1  # vLLM only: GPUs one model is split over
    device: str | None = None
    kind: Literal["local"] = "local"

    def check(self) -> None:
        if not self.run_dir:
            raise ConfigError(
                "run", "system=run needs a training run dir: `python evaluate.py run=outputs/train/<date>/<time>`"
            )
        cfg = load_run_config(self.run_dir)
        if not (Path(self.run_dir) / "adapter" / "adapter_config.json").exists():
            raise ConfigError("run", f"'{self.run_dir}' has no adapter/ (did the training run finish?)")
        _check_backend(self.backend, self.tensor_parallel_size)
        self.name = self.name or run_system_name(cfg)

    def open(self) -> LocalGenerator | VLLMGenerator:
        from hydra.utils import instantiate
        from peft import PeftModel

        from arastory.train.model import load_model, load_tokenizer, resolve_model_path

        assert self.run_dir and self.name  # check() ran first
        cfg = load_run_config(self.run_dir)
        adapter_dir = str(Path(self.run_dir) / "adapter")
        base_path = resolve_model_path(cfg.model)
        tokenizer = load_tokenizer(adapter_dir, cfg.model.trust_remote_code)
        if self.backend == "vllm":
            return VLLMGenerator(
                self.name,
                base_path,
                tokenizer,
                cfg.data.max_length,
                adapter_dir=adapter_dir,
                merge=self.merge,
                lora_rank=int(cfg.peft.r),
                trust_remote_code=cfg.model.trust_remote_code,
                tensor_parallel_size=self.tensor_parallel_size,
            )
        base = load_model(
            base_path,
            instantiate(cfg.quant),
            cfg.model.dtype,
            cfg.model.attn_implementation,
            cfg.model.trust_remote_code,
            for_training=False,
        )
        model = PeftModel.from_pretrained(base, adapter_dir)
        return LocalGenerator(
            self.name,
            model,
            tokenizer,
            cfg.data.max_length,
            self.batch_size,
            meta={"base": str(cfg.model.name_or_path or base_path), "adapter": adapter_dir},
        )

    def identity(self) -> dict:
        """The run, its base model and quantization, and the adapter's content (a retrained adapter: another system)."""
        from arastory.io import file_fingerprint

        assert self.run_dir  # check() ran first
        cfg = load_run_config(self.run_dir)
        weights = sorted((Path(self.run_dir) / "adapter").glob("adapter_model.*"))
        return {
            "kind": "run",
            "name": self.name,
            "run": str(Path(self.run_dir).resolve()),
            "base": OmegaConf.select(cfg, "model.name_or_path")
            or ("tiny" if OmegaConf.select(cfg, "model.tiny") else None),
            "quant": OmegaConf.select(cfg, "quant._target_"),
            "adapter": file_fingerprint(weights[0]) if weights else None,
            "backend": self.backend,
        }


@dataclass
class HFSystem:
    """`system=hf`: any HF causal LM (hub id or local path) zero-shot, e.g. the study's AceGPT-7B-chat baseline."""

    model: str | None = None
    name: str | None = None
    quant: str | None = None  # null (full precision) | nf4 (bitsandbytes 4-bit)
    dtype: str = "bfloat16"
    attn_implementation: str | None = "sdpa"
    trust_remote_code: bool = False
    backend: str = "hf"
    batch_size: int = 8
    max_length: int = 2048  # prompt + story tokens for perplexity
    revision: str | None = None  # a hub branch, tag or commit (null: main); part of the system's identity
    tensor_parallel_size: int = 1  # vLLM only: GPUs one model is split over
    kind: Literal["local"] = "local"

    def check(self) -> None:
        if not self.model:
            raise ConfigError(
                "system.model",
                "is empty; name an HF id or a local path, e.g. system.model=FreedomIntelligence/AceGPT-7B-chat",
            )
        from arastory.train.model import check_model_path

        try:
            check_model_path(str(self.model))
        except ConfigError as error:
            raise ConfigError("system.model", str(error).split(": ", 2)[-1]) from None
        if self.quant not in (None, "nf4"):
            raise ConfigError("system.quant", f"'{self.quant}' is not one of: null, nf4")
        _check_backend(self.backend, self.tensor_parallel_size)
        self.name = self.name or str(self.model)

    def open(self) -> LocalGenerator | VLLMGenerator:
        from arastory.train.model import load_model, load_tokenizer, resolve_model_path

        path = resolve_model_path(OmegaConf.create({"name_or_path": self.model}))
        if self.revision and not Path(path).exists():
            from huggingface_hub import snapshot_download

            path = snapshot_download(repo_id=str(self.model), revision=self.revision)
        assert self.name  # check() ran first
        tokenizer = load_tokenizer(path, self.trust_remote_code)
        if self.backend == "vllm":
            return VLLMGenerator(
                self.name,
                path,
                tokenizer,
                self.max_length,
                trust_remote_code=self.trust_remote_code,
                tensor_parallel_size=self.tensor_parallel_size,
            )
        quant = None
        if self.quant == "nf4":
            from transformers import BitsAndBytesConfig

            quant = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=getattr(torch, self.dtype),
            )
        model = load_model(
            path, quant, self.dtype, self.attn_implementation, self.trust_remote_code, for_training=False
        )
        return LocalGenerator(
            self.name, model, tokenizer, self.max_length, self.batch_size, meta={"model": str(self.model)}
        )

    def identity(self) -> dict:
        return {
            "kind": "hf",
            "name": self.name,
            "model": str(self.model),
            "revision": model_revision(str(self.model), self.revision),
            "quant": self.quant,
            "dtype": self.dtype,
            "backend": self.backend,
        }


@dataclass
class OpenAISystem:
    """`system=openai`: any OpenAI-compatible chat model (gpt-3.5-turbo, or Command-R behind a compatible endpoint)."""

    model: str = "gpt-3.5-turbo"
    name: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0
    max_retries: int = 6
    concurrency: int = 8
    kind: Literal["api"] = "api"
    _client: ChatClient | None = field(default=None, repr=False)

    def check(self) -> None:
        from arastory.llm import ChatClient

        self._client = ChatClient(
            self.model,
            self.base_url,
            self.api_key_env,
            self.timeout,
            self.max_retries,
            key_hint="or evaluate a local system (system=run or system=hf)",
            config_key="system",
        )
        self.name = self.name or self.model

    def open(self) -> APIGenerator:
        if self._client is None:
            self.check()
        assert self.name and self._client is not None  # check() named it and made the client
        return APIGenerator(self.name, self._client, self.concurrency)

    def identity(self) -> dict:
        from arastory.evaluate.judge import endpoint_of

        return {"kind": "openai", "name": self.name, "model": self.model, "endpoint": endpoint_of(self.base_url)}


def model_revision(model: str, revision: str | None = None) -> str:
    """What version of a model is loaded: for a local dir, a hash of its files' names, sizes and times; for a hub id,
    the cached snapshot's commit when it is in the local HF cache, else the requested revision (default main)."""
    path = Path(model).expanduser()
    if path.exists():
        from arastory.io import fingerprint

        files = sorted(p for p in path.rglob("*") if p.is_file())
        return "local:" + fingerprint(
            [(str(p.relative_to(path)), p.stat().st_size, int(p.stat().st_mtime)) for p in files]
        )
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json", revision=revision)
        if isinstance(cached, str):
            return Path(cached).parent.name  # .../snapshots/<commit>/config.json
    except Exception:
        pass
    return revision or "main"


def _check_backend(backend: str, tensor_parallel_size: int = 1) -> None:
    if backend not in BACKENDS:
        raise ConfigError("system.backend", f"'{backend}' is not one of: {', '.join(BACKENDS)}")
    if not isinstance(tensor_parallel_size, int) or tensor_parallel_size < 1:
        raise ConfigError("system.tensor_parallel_size", f"must be a positive integer, got {tensor_parallel_size}")
    if backend == "vllm":
        import importlib.util

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not gpus:
            raise ConfigError(
                "system.backend", "vllm needs a CUDA GPU and this machine has none; use system.backend=hf"
            )
        if tensor_parallel_size > gpus:
            raise ConfigError(
                "system.tensor_parallel_size",
                f"{tensor_parallel_size} GPUs asked, {gpus} visible (CUDA_VISIBLE_DEVICES)",
            )
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(
                "system.backend",
                "vllm is not installed; pip install 'arastory[vllm]' (GPU only), or use system.backend=hf",
            )


# ------------------------------------------------------------------------------------------------------ generators
class LocalGenerator:
    """A loaded transformers model: batched, left-padded sampling and perplexity of prompt→story records."""

    kind: Literal["local"] = "local"

    def __init__(
        self,
        name: str,
        model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        batch_size: int,
        meta: dict | None = None,
    ):
        from arastory.train.formatting import ExampleFormatter

        self.name, self.model, self.tokenizer, self.batch_size = name, model, tokenizer, batch_size
        self.formatter = ExampleFormatter(tokenizer, max_length=max_length, overflow="truncate")
        self.meta = meta or {}
        self.model.eval()

    def generate(self, prompts: list[str], sampling: Sampling, seed: int) -> list[dict]:
        """One story per prompt from one left-padded batch; each stops at EOS or the chat template's end of turn."""
        from arastory.train.generate import generate_batch

        torch.manual_seed(seed)
        return generate_batch(
            self.model,
            self.formatter,
            prompts,
            sampling.max_new_tokens,
            sampling.temperature,
            sampling.top_p,
            sampling.do_sample,
        )

    def prompt_tokens(self, prompt: str) -> int:
        """Tokens of the formatted prompt (checked against limits.max_prompt_tokens before generating)."""
        return len(self.formatter.prompt_ids(prompt))

    @torch.no_grad()
    def perplexity(self, records: Sequence[AnyStory]) -> dict | None:
        """Of the stories given their prompts (story tokens + EOS, as in training): perplexity exp(mean token NLL), and
        bits per character / per word = total NLL in nats / ln 2 / characters (words) of the scored story text, which
        stand side by side across tokenizers. A story cut at max_length counts only the text that was scored."""
        from arastory.train.datamodule import pad_collate
        from arastory.train.formatting import IGNORE_INDEX

        examples, chars, words = [], 0, 0
        for record in records:
            example = self.formatter.encode(record.prompt, record.story)
            if example is None:
                continue
            scored = [t for t in example["labels"] if t != IGNORE_INDEX]
            text = record.story
            if scored[-1] != self.tokenizer.eos_token_id:  # truncated: the scored part only
                text = str(self.tokenizer.decode(scored, skip_special_tokens=True))
            examples.append(example)
            chars, words = chars + len(text), words + len(text.split())
        if not examples:
            return None
        collate = pad_collate(self.tokenizer.pad_token_id)
        loss_sum, tokens = 0.0, 0
        for start in range(0, len(examples), self.batch_size):
            batch = {k: v.to(self.model.device) for k, v in collate(examples[start : start + self.batch_size]).items()}
            logits = (
                self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
            )
            labels = batch["labels"][:, 1:]
            loss_sum += float(
                torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100, reduction="sum"
                )
            )
            tokens += int((labels != -100).sum())
        if not tokens:
            return None
        bits = loss_sum / math.log(2)
        return {
            "perplexity": round(math.exp(min(loss_sum / tokens, 50)), 4),
            "bits_per_char": round(bits / chars, 4) if chars else None,
            "bits_per_word": round(bits / words, 4) if words else None,
            "stories": len(examples),
            "tokens": tokens,
        }

    def close(self) -> None:
        vars(self).pop("model", None)  # drop the weights (a second close is harmless)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class VLLMGenerator:
    """vLLM generation (UNTESTED in this project: vLLM needs a GPU). The adapter is applied per request with a
    LoRARequest, or with `merge=true` merged into a bf16 copy of the base (cached); never into 4-bit weights."""

    kind: Literal["local"] = "local"

    def __init__(
        self,
        name: str,
        base_path: str,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        adapter_dir: str | None = None,
        merge: bool = False,
        lora_rank: int = 16,
        trust_remote_code: bool = False,
        tensor_parallel_size: int = 1,
    ):
        from arastory.extras import require_extra
        from arastory.train.formatting import ExampleFormatter

        LLM = require_extra("vllm", "system.backend").LLM

        self.name, self.tokenizer = name, tokenizer
        self.formatter = ExampleFormatter(tokenizer, max_length=max_length)
        self.meta = {
            "backend": "vllm",
            "base": base_path,
            "adapter": adapter_dir,
            "merged": bool(adapter_dir and merge),
            "tensor_parallel_size": tensor_parallel_size,
        }
        self.lora_request = None
        if adapter_dir and merge:
            base_path = merged_bf16_copy(base_path, adapter_dir, trust_remote_code)
        elif adapter_dir:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("adapter", 1, adapter_dir)  # the run's adapter, applied per request
        self.llm = LLM(
            model=base_path,
            tokenizer=adapter_dir or base_path,
            dtype="bfloat16",
            enable_lora=self.lora_request is not None,
            max_lora_rank=max(lora_rank, 8),
            max_loras=1,
            tensor_parallel_size=tensor_parallel_size,
            trust_remote_code=trust_remote_code,
        )

    def generate(self, prompts: list[str], sampling: Sampling, seed: int) -> list[dict]:
        from vllm import SamplingParams

        params = SamplingParams(
            max_tokens=sampling.max_new_tokens,
            seed=seed,
            stop_token_ids=self.formatter.stop_token_ids,
            temperature=sampling.temperature if sampling.do_sample else 0.0,
            top_p=sampling.top_p if sampling.do_sample else 1.0,
        )
        inputs = [{"prompt_token_ids": self.formatter.prompt_ids(p)} for p in prompts]
        outputs = self.llm.generate(inputs, params, lora_request=self.lora_request, use_tqdm=False)
        return [
            {
                "story": o.outputs[0].text.strip(),
                "meta": {
                    "new_tokens": len(o.outputs[0].token_ids),
                    "finished": o.outputs[0].finish_reason == "stop",
                    "finish_reason": o.outputs[0].finish_reason,
                },
            }
            for o in outputs
        ]

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.formatter.prompt_ids(prompt))

    def perplexity(self, records: Sequence[AnyStory]) -> None:
        return None  # not measured with vLLM; use system.backend=hf for perplexity

    def close(self) -> None:
        self.llm = None
        gc.collect()


def merged_bf16_copy(base_path: str, adapter_dir: str, trust_remote_code: bool = False) -> str:
    """Base + adapter merged in bfloat16 (the base reloaded unquantized), saved once under cache_dir()/merged."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from arastory.io import file_fingerprint, fingerprint
    from arastory.paths import cache_dir

    key = fingerprint(base_path, file_fingerprint(Path(adapter_dir) / "adapter_model.safetensors"))
    target = cache_dir() / "merged" / key
    if (target / "config.json").exists():
        return str(target)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.bfloat16, trust_remote_code=trust_remote_code)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    staging = target.with_name(f".{key}.tmp")
    merged.save_pretrained(staging)
    staging.rename(target)
    return str(target)


class APIGenerator:
    """Stories from an OpenAI-compatible chat model, one request per prompt, several in flight."""

    kind: Literal["api"] = "api"

    def __init__(self, name: str, client: ChatClient, concurrency: int):
        self.name, self.client, self.concurrency = name, client, concurrency
        self.meta = {"model": client.model, "base_url": client.base_url}

    def generate_one(self, prompt: str, sampling: Sampling) -> dict:
        params: dict[str, float] = {"max_tokens": sampling.max_new_tokens}
        if sampling.do_sample:
            params.update(temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            params["temperature"] = 0
        response = self.client.chat([{"role": "user", "content": prompt}], **params)
        return {
            "story": response.text.strip(),
            "meta": {
                "usage": response.usage,
                "retries": response.retries,
                "model": response.model,
                "finish_reason": response.finish_reason,
                "finished": response.finish_reason != "length",
            },
        }

    def perplexity(self, records: Sequence[AnyStory]) -> None:
        return None  # an API model's token probabilities are not available

    def close(self) -> None:
        pass


if TYPE_CHECKING:
    # What `system=` specs are and what their open() returns; `kind` tells them apart (mypy narrows on it).
    EvalSystem: TypeAlias = RunSystem | HFSystem | OpenAISystem | FileSystem
    StoryGenerator: TypeAlias = LocalGenerator | VLLMGenerator | APIGenerator | FileGenerator
