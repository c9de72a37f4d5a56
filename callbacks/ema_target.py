"""EMATargetUpdate: the JEPA/BYOL target encoder as an exponential moving average of the online encoder.

After optimizer step k (k = 0, 1, ...; Lightning's global_step is k + 1 right after it):

    m_k      = end - (end - start) * (1 + cos(pi * min(k, K) / K)) / 2      (Grill et al. 2020, BYOL)
    theta_t <- m_k * theta_t + (1 - m_k) * theta_o

theta_t are the target encoder's parameters, theta_o the online (context) encoder's, K the
schedule length. m_k is a pure function of k, so a resumed run continues exactly. Only the
target encoder changes; unlike Lightning's whole-model weight averaging, nothing else is averaged.
With gradient accumulation the update runs once per optimizer step, not per micro-batch.
The two encoders may sit in a submodule (an AudioJEPA in EmberModel's sensory slot): `part` names it,
or the callback finds the one module that holds both.
"""

from __future__ import annotations

import logging
import math
from typing import Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

from ember.errors import EmberConfigError

log = logging.getLogger(__name__)


def ema_momentum(step: int, total: int, start: float = 0.996, end: float = 1.0) -> float:
    """m_k for optimizer step k = `step` of a cosine schedule of `total` steps from start to end."""
    progress = min(max(step, 0), total) / max(total, 1)
    return end - (end - start) * (1.0 + math.cos(math.pi * progress)) / 2.0


class EMATargetUpdate(Callback):
    """Moves `<part>.<target>` towards `<part>.<online>` once per optimizer step (see the module docstring).

    Logs the momentum as jepa/ema_momentum.

    Args:
        start: momentum at the first optimizer step.
        end: momentum at the end of the schedule and after it.
        max_steps: schedule length K in optimizer steps; None for the trainer's max_steps (or its
            estimated total when max_steps is unset).
        online: attribute of the part (see below) holding the trained encoder.
        target: attribute holding its EMA copy (parameters with requires_grad=False).
        part: dotted path of the module holding both, inside the LightningModule (e.g. "sensory" for an
            AudioJEPA in EmberModel's sensory slot, "sensory.jepa" deeper); None to search: the
            LightningModule itself if it holds both, else its only submodule that does.
    """

    moves_target_encoder = True  # AudioJEPA warns when no callback on the trainer carries this flag

    def __init__(self, start: float = 0.996, end: float = 1.0, max_steps: Optional[int] = None,
                 online: str = "encoder", target: str = "target_encoder", part: Optional[str] = None):
        if not 0.0 <= start <= end <= 1.0:
            raise EmberConfigError(f"EMATargetUpdate needs 0 <= start={start} <= end={end} <= 1")
        if max_steps is not None and max_steps < 1:
            raise EmberConfigError(f"EMATargetUpdate max_steps={max_steps} must be >= 1, or null for the trainer's")
        self.start, self.end, self.max_steps = start, end, max_steps
        self.online, self.target, self.part = online, target, part
        self._last_step: Optional[int] = None
        self._path: Optional[str] = None  # where setup found the encoders; every step reuses it

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str):
        path = self._path = self.locate(pl_module)
        online, target = self._modules(pl_module, path)
        where = ".".join([type(pl_module).__name__] + ([path] if path else []))
        if path:
            log.info("EMATargetUpdate moves %s.%s towards %s.%s", where, self.target, where, self.online)
        if [n for n, _ in online.named_parameters()] != [n for n, _ in target.named_parameters()]:
            raise EmberConfigError(f"{where}.{self.target} does not mirror .{self.online} "
                                   "(different parameters): make the target a copy.deepcopy of the online encoder")
        if any(p.requires_grad for p in target.parameters()):
            raise EmberConfigError(f"{where}.{self.target} has trainable parameters: freeze it "
                                   "with requires_grad_(False), only EMATargetUpdate may change it")

    def total_steps(self, trainer: Trainer) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return int(trainer.max_steps if trainer.max_steps and trainer.max_steps > 0
                   else trainer.estimated_stepping_batches)

    def momentum(self, step: int, trainer: Trainer) -> float:
        """m_k for optimizer step k = `step` (0-based)."""
        return ema_momentum(step, self.total_steps(trainer), self.start, self.end)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule):
        self._last_step = trainer.global_step  # after a resume: the restored step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int):
        step = trainer.global_step
        if step == self._last_step:  # a micro-batch of gradient accumulation (or a skipped step): no update
            return
        self._last_step = step
        m = self.momentum(step - 1, trainer)
        path = self._path if self._path is not None else self.locate(pl_module)
        online, target = self._modules(pl_module, path)
        self.update_target(target, online, m)
        pl_module.log("jepa/ema_momentum", m)

    @torch.no_grad()
    def update_target(self, target: nn.Module, online: nn.Module, momentum: float):
        """theta_t <- m theta_t + (1 - m) theta_o for every parameter; floating buffers are copied."""
        for theta_t, theta_o in zip(target.parameters(), online.parameters()):
            theta_t.mul_(momentum).add_(theta_o.detach(), alpha=1.0 - momentum)
        for buf_t, buf_o in zip(target.buffers(), online.buffers()):
            if buf_t.is_floating_point():
                buf_t.copy_(buf_o)

    def locate(self, pl_module: LightningModule) -> str:
        """Dotted path of the module holding `online` and `target` ("" for pl_module itself): `part`, or searched."""
        if self.part is not None:
            return self._check_part(pl_module)
        if self._holds_both(pl_module):
            return ""
        name = type(pl_module).__name__
        found = [path for path, module in pl_module.named_modules() if path and self._holds_both(module)]
        if not found:
            raise EmberConfigError(f"no module of {name} holds both `{self.online}` and `{self.target}`: set "
                                   "EMATargetUpdate's part to the dotted path of the JEPA (e.g. sensory), set "
                                   "online/target to the encoders' attribute names, or remove the callback")
        if len(found) > 1:
            raise EmberConfigError(f"several modules of {name} hold both `{self.online}` and `{self.target}` "
                                   f"({', '.join(found)}): set EMATargetUpdate's part to the one it should update")
        return found[0]

    def _check_part(self, pl_module: LightningModule) -> str:
        name = type(pl_module).__name__
        try:
            holder = pl_module.get_submodule(self.part)
        except AttributeError:
            children = ", ".join(n for n, _ in pl_module.named_children()) or "none"
            raise EmberConfigError(f"EMATargetUpdate part={self.part!r} is not a module of {name} (its top-level "
                                   f"modules: {children}): fix the dotted path, or set part to null to "
                                   "search") from None
        if not self._holds_both(holder):
            raise EmberConfigError(f"{name}.{self.part} does not hold both modules `{self.online}` and "
                                   f"`{self.target}`: point EMATargetUpdate's part at the JEPA, or set part to null "
                                   "to search")
        return self.part

    def _holds_both(self, module: nn.Module) -> bool:
        return all(isinstance(getattr(module, a, None), nn.Module) for a in (self.online, self.target))

    def _modules(self, pl_module: LightningModule, path: str) -> tuple[nn.Module, nn.Module]:
        holder = pl_module.get_submodule(path)
        return getattr(holder, self.online), getattr(holder, self.target)
