"""Fully sharded data-parallel training (`trainer=fsdp`, `trainer=fsdp_cpu`) through Lightning's FSDPStrategy (torch
FSDP1, `use_orig_params=True`): the strategy, its wrap policy, the checks that keep it to what it can train, and the
gathering of the adapter for saves. Everything else (worker launch, data shards, token-weighted loss, validation sums,
rank-0 writes) is the DDP path's (arastory/train/distributed.py).

FSDP wraps the model in place: after a `fit` the LoRA model's decoder layers are FSDP units whose parameters are
shards. So the recipe trains each stage on a freshly loaded model (the previous stage's adapter loaded from disk), and
rank 0 samples from a fresh unsharded model carrying the final adapter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning_fabric.strategies.fsdp import _move_torchmetrics_to_device
from pytorch_lightning.plugins.precision.fsdp import FSDPPrecision
from pytorch_lightning.strategies import FSDPStrategy
from torch.distributed.fsdp import FullyShardedDataParallel

from arastory.errors import ConfigError
from arastory.train.distributed import LaunchesWorkers

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from omegaconf import DictConfig
    from peft import PeftModel
    from pytorch_lightning.plugins.precision import Precision
    from torch.optim import Optimizer


def is_fsdp(trainer_cfg: DictConfig) -> bool:
    """Whether a `trainer` config asks for FSDP (`strategy: fsdp`, also Lightning's `fsdp_cpu_offload` name)."""
    return str(trainer_cfg.get("strategy", "auto")).startswith("fsdp")


def check_fsdp(cfg: DictConfig) -> None:
    """What FSDP cannot train stops here with one line, before any data or model loads."""
    if not is_fsdp(cfg.trainer):
        return
    quant = cfg.quant
    if quant.get("load_in_4bit") or quant.get("load_in_8bit"):
        on_cpu = str(cfg.trainer.get("accelerator", "auto")) == "cpu" or not torch.cuda.is_available()
        if on_cpu:
            raise ConfigError(
                "trainer.strategy",
                "fsdp shards a 4-bit base only on CUDA GPUs (bitsandbytes' quant_storage), and this run is on the "
                "CPU; use quant=none to shard an unquantized base, or trainer=ddp_cpu for QLoRA",
            )
        storage = str(quant.get("bnb_4bit_quant_storage", "uint8"))
        if storage != str(cfg.model.dtype):
            raise ConfigError(
                "quant.bnb_4bit_quant_storage",
                f"'{storage}': FSDP shards 4-bit weights only when they are stored as the compute dtype; "
                f"add quant.bnb_4bit_quant_storage={cfg.model.dtype} (or use trainer=ddp)",
            )
    if not cfg.strategy.restart_optimizer and len(cfg.strategy.stages) > 1:
        raise ConfigError(
            "strategy.restart_optimizer",
            "false is not built for trainer=fsdp (AdamW's sharded state is not carried between stages); "
            "use strategy.restart_optimizer=true, or trainer=ddp",
        )


def wrap_policy(model: torch.nn.Module) -> Callable[..., bool]:
    """One FSDP unit per decoder layer (the model's `_no_split_modules`) and one per LoRA A or B matrix, so that each
    unit's flat parameter is of one dtype (peft keeps LoRA weights float32 next to a bfloat16 base) and the frozen
    layers' units hold no trainable weight. `modules_to_save` copies (the tiny model's lm_head) stay in the root unit
    with the embeddings (of their dtype)."""
    from peft.tuners.lora import LoraLayer
    from torch.distributed.fsdp.wrap import _or_policy, lambda_auto_wrap_policy, transformer_auto_wrap_policy

    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    layers = {type(m) for m in model.modules() if type(m).__name__ in names}
    lora = {
        id(leaf)
        for m in model.modules()
        if isinstance(m, LoraLayer)
        for matrices in (m.lora_A, m.lora_B)
        for leaf in matrices.values()
    }
    return functools.partial(
        _or_policy,
        policies=[
            functools.partial(lambda_auto_wrap_policy, lambda_fn=lambda module: id(module) in lora),
            functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=layers),
        ],
    )


class RootClipping(FSDPPrecision):
    """Lightning's FSDP precision with `gradient_clip_val` (norm) working: the norm is the whole adapter's, computed by
    the root FSDP module over every rank's shards (Lightning's plugin has no reference to the root and refuses)."""

    def __init__(self, precision, strategy: ShardedLoRA):
        super().__init__(precision)
        self.strategy = strategy

    def clip_grad_by_norm(self, optimizer: Optimizer, clip_val: float | int, *args: Any, **kwargs: Any) -> None:
        self.strategy.root.clip_grad_norm_(clip_val)


class ShardedLoRA(LaunchesWorkers, FSDPStrategy):
    """Lightning's FSDPStrategy for a LoRA model: arastory's worker launch, an auto-wrap policy per decoder layer (and
    per trainable leaf), `use_orig_params=True` so the optimizer sees only the adapter, CPU (gloo) as well as GPUs,
    full state dicts gathered on rank 0 (only the adapter's tensors are kept in checkpoints, by StoryLM), and
    validation batches in lockstep over the ranks (an FSDP forward is a collective)."""

    strategy_name = "arastory_fsdp"
    lockstep_validation = True

    def __init__(self, run_dir: str | Path, **kwargs):
        kwargs.setdefault("use_orig_params", True)
        super().__init__(**kwargs)
        self.run_dir = Path(run_dir)
        self._root: FullyShardedDataParallel | None = None

    @property
    def root(self) -> FullyShardedDataParallel:
        """The root FSDP module (the LightningModule wrapped, set up by `_setup_model`)."""
        assert self._root is not None, "the model is wrapped in setup"
        return self._root

    @property
    def precision_plugin(self) -> FSDPPrecision:
        return FSDPStrategy.precision_plugin.fget(self)  # type: ignore[attr-defined]

    @precision_plugin.setter
    def precision_plugin(self, plugin: Precision | None) -> None:
        if isinstance(plugin, FSDPPrecision) and not isinstance(plugin, RootClipping):
            plugin = RootClipping(plugin.precision, self)
        FSDPStrategy.precision_plugin.fset(self, plugin)  # type: ignore[attr-defined]

    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Wrap once per module: `trainer.validate` after `fit` gets the same root back (wrapping again would skip the
        root, whose sharded parameters would then be used unsharded)."""
        if self._root is not None and self._root.module is model:
            return self._root
        on_cpu = self.root_device.type == "cpu"  # FSDP takes the CPU only when named: device_id=None means "a GPU"
        self._root = FullyShardedDataParallel(
            module=model,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            device_id=torch.device("cpu") if on_cpu else self.root_device.index,
            auto_wrap_policy=wrap_policy(model),
            **{k: v for k, v in self.kwargs.items() if k != "auto_wrap_policy"},
        )
        _move_torchmetrics_to_device(self._root, self.root_device)  # as Lightning's own setup does
        return self._root

    @contextmanager
    def full_state(self, rank0_only: bool = True) -> Iterator[None]:
        """Unsharded state dicts; offloaded to the CPU from GPUs (FSDP's offload of CPU tensors frees them under the
        copy: a segfault on CPU runs)."""
        from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        offload = self.root_device.type != "cpu"
        with FSDP.state_dict_type(
            self.root,
            StateDictType.FULL_STATE_DICT,
            FullStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only),
            FullOptimStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only),
        ):
            yield

    def lightning_module_state_dict(self) -> dict:
        with self.full_state():
            return self.root.state_dict()

    def optimizer_state(self, optimizer: Optimizer) -> dict:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with self.full_state():
            return FSDP.optim_state_dict(self.root, getattr(optimizer, "_optimizer", optimizer))

    def load_checkpoint(self, checkpoint_path: str | Path, weights_only: bool | None = None) -> dict:
        """A full checkpoint (rank 0's file) into every rank's shards: the adapter's tensors (the frozen base is not in
        it, so non-strict) and the optimizer's full state."""
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        assert self.lightning_module is not None  # set up before Lightning restores
        path = Path(self.broadcast(checkpoint_path))
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        with self.full_state(rank0_only=False):
            self.root.load_state_dict(checkpoint.pop("state_dict"), strict=False)
            fitting = self.lightning_module.trainer.state.fn == "fit"
            for optimizer, state in zip(
                self.optimizers if fitting else [], checkpoint.get("optimizer_states", []), strict=True
            ):
                optimizer.load_state_dict(FSDP.optim_state_dict_to_load(self.root, optimizer, state))
        return checkpoint

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        """A padding batch (a rank with fewer validation examples than another) runs the model for the collectives
        only: nothing of it reaches the validation sums."""
        batch = args[0] if args else kwargs["batch"]
        if not batch.get("lockstep_padding"):
            return super().validation_step(*args, **kwargs)
        with self.precision_plugin.val_step_context():
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
            assert self.model is not None and self.lightning_module is not None, "set up by Lightning before validation"
            self._forward_redirection(self.model, self.lightning_module, "forward", **inputs)
        return None


def gathered_adapter(trainer: pl.Trainer) -> dict | None:
    """The adapter's tensors, unsharded, keyed as the peft model names them (for `save_pretrained(state_dict=...)`):
    on rank 0 under FSDP (every rank must call this: it is a collective), None otherwise."""
    if not isinstance(trainer.strategy, ShardedLoRA):
        return None
    from arastory.train.module import StoryLM

    module = trainer.lightning_module
    assert isinstance(module, StoryLM), "arastory trains a StoryLM"
    state = trainer.strategy.lightning_module_state_dict()
    trainable = module.trainable_shapes()
    return {k.removeprefix("model."): v for k, v in state.items() if k in trainable}


def save_adapter(model: PeftModel, state: dict, out_dir: Path) -> None:
    """Write gathered adapter tensors as `save_pretrained` would (adapter_config.json, adapter_model.safetensors, keys
    without the adapter's name): peft's own save walks the module tree, whose names FSDP changed."""
    import copy

    from safetensors.torch import save_file

    name = model.active_adapter
    config = copy.deepcopy(model.peft_config[name])
    config.inference_mode = True
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out_dir))
    tensors = {
        k.replace(f".modules_to_save.{name}.", ".").replace(f".{name}.", "."): v.contiguous() for k, v in state.items()
    }
    save_file(tensors, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
