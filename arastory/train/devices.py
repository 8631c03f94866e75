"""Keep the model on its training device from the first fit to the last sample.

Lightning's `Strategy.teardown` moves the LightningModule to the CPU after every `fit` and `validate`: samples were
then decoded on the CPU while the GPU idled, and each stage boundary copied the weights GPU→CPU→GPU.
`ResidentSingleDevice` is Lightning's single-device strategy without that move.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from pytorch_lightning.strategies import SingleDeviceStrategy, Strategy

if TYPE_CHECKING:
    from omegaconf import DictConfig


def teardown_resident(strategy: Strategy) -> None:
    """`Strategy.teardown` without moving the model to the CPU (the optimizer state, saved from the CPU after each
    stage, still moves there)."""
    for optimizer in strategy.optimizers:
        for state in optimizer.state.values():
            for key, value in state.items():
                if torch.is_tensor(value):
                    state[key] = value.cpu()
    strategy.precision_plugin.teardown()
    if strategy.accelerator is not None:
        strategy.accelerator.teardown()
    strategy.checkpoint_io.teardown()


class ResidentSingleDevice(SingleDeviceStrategy):
    """A single-device strategy whose teardown leaves the model where it trained."""

    strategy_name = "resident_single_device"

    def teardown(self) -> None:
        teardown_resident(self)


def single_training_device(accelerator: str, devices: int | str | Sequence[int]) -> torch.device | None:
    """The one device a `trainer` config trains on, or None when it asks for several (or an accelerator this module
    does not place: Lightning then picks its own strategy)."""
    wants_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if accelerator == "cpu" or (accelerator == "auto" and not wants_cuda):
        return torch.device("cpu")
    if not wants_cuda:
        return None
    if devices in (1, "1") or (devices in ("auto", -1, "-1") and torch.cuda.device_count() == 1):
        return torch.device("cuda", torch.cuda.current_device())  # where load_model puts a 4-bit base
    if isinstance(devices, (list, tuple)) and len(devices) == 1:
        return torch.device("cuda", int(devices[0]))
    return None


def training_strategy(trainer_cfg: DictConfig) -> Strategy | str:
    """`Trainer(strategy=...)`: the config's own strategy if it names one, else `ResidentSingleDevice` on the one
    training device (multi-device runs keep Lightning's choice)."""
    named = trainer_cfg.get("strategy", "auto")
    if named != "auto":
        return named
    device = single_training_device(str(trainer_cfg.get("accelerator", "auto")), trainer_cfg.get("devices", "auto"))
    return "auto" if device is None else ResidentSingleDevice(device=device)
