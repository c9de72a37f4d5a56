"""One abstract base class per plugin kind. The base classes *are* the registry.

jsonargparse resolves `class_path: ShortName` among the imported subclasses of the type hint,
so a plugin is usable in YAML as soon as its module is imported (ember.registry imports the
built-ins and the `ember.plugins` entry points before the CLI parses anything).

Each base is a LightningModule, so a plugin that can learn alone can be trained alone.
Letters: b batch, n tokens, s sensory tokens, p prefix tokens, d width, v vocabulary.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar, Literal, NamedTuple, Optional

import numpy as np
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.parsing import AttributeDict, save_hyperparameters
from torch import Tensor, nn

from ember.errors import EmberConfigError
from ember.state import StateBase


class EmberPlugin(LightningModule, ABC):
    """Common root of every plugin kind; `kind` names the slot it fills."""

    kind: ClassVar[str] = "plugin"

    def save_own_hyperparameters(self, ignore: list[str]) -> None:
        """`save_hyperparameters` of this plugin's own __init__ arguments, not logged; call it from __init__.

        While LightningCLI builds a model, Lightning's takes the arguments LightningCLI hands that model, whichever
        module calls it: a plugin built for an EmberModel slot would save the EmberModel's arguments as its own
        (TinyRecursiveCore then lost n_sup and crashed in the composite). Those are kept only when they are this
        plugin's (the plugin trained alone: LightningCLI reloads its checkpoints by them)."""
        frame = inspect.currentframe().f_back
        self.save_hyperparameters(ignore=ignore, frame=frame, logger=False)
        built = self.hparams.get("_class_path")
        if built is not None and built.rsplit(".", 1)[-1] != type(self).__name__:
            self._hparams = AttributeDict()  # another model's arguments: this plugin's own, from its __init__
            save_hyperparameters(self, ignore=ignore, frame=frame)

class BackboneOutput(NamedTuple):
    logits: Tensor  # (b, n, v) float
    state: StateBase  # the stream state after the last token (carries state)


class LanguageBackbone(EmberPlugin):
    """H-module: a byte-level sequence model with explicit per-stream state."""

    kind = "backbone"
    d_model: int
    vocab_size: int

    @abstractmethod
    def forward(self, tokens: Tensor, state: StateBase | None = None,
                prefix: Tensor | None = None) -> BackboneOutput:
        """tokens (b, n) int64; state from the previous chunk or None; prefix (b, p, d) or None."""

    def modulate(self, state: StateBase | None, modulation: Tensor) -> StateBase | None:
        """The state with the stream's external signals `modulation` (b, k) (sensory arousal/valence/threat) handed
        to every plastic memory, whose neuromodulators read them in each span summary from then on (a fresh state
        is made for None). The default, for backbones without memories: the state unchanged."""
        return state

    def end_session(self, state: StateBase) -> StateBase:
        """A session ends: plastic memories commit their open spans. No-op without memories."""
        return state

    def memory_report(self, state: StateBase) -> dict[str, StateBase]:
        """The state of each plastic memory inside `state`, by instance name: `pm_L<i>` for the PM of layer i,
        `em_L<i>` for a block's EM (a layer of its own at index i). {} for a backbone without memories."""
        return {}

    def state_grows(self) -> bool:
        """True when the per-stream state grows with the stream (a full-attention KV cache): it cannot be kept
        from one session to the next as a fixed-size memory state."""
        return False


class SensoryOutput(NamedTuple):
    tokens: Tensor  # (b, s, d) latent sensory tokens
    modulation: Tensor  # (b, k) arousal/valence/threat-like signals for the neuromodulators


class SensoryRequest(NamedTuple):
    """A view of the signal that a round of active perception asks the L-module for (SPEC 3.6, seed 002: "a different
    frequency range or a longer window"). The default is the whole signal."""

    start: float = 0.0  # seconds into the signal where the view begins
    seconds: Optional[float] = None  # its length in seconds; None: to the end of the signal
    bands: tuple[float, float] = (0.0, 1.0)  # the share of the frequency bands kept, low to high, within [0, 1]


class SensoryEncoder(EmberPlugin):
    """L-module: raw signal -> latent tokens + modulation signals (SPEC 3.4)."""

    kind = "sensory"
    d_model: int

    @abstractmethod
    def forward(self, signal: Tensor) -> SensoryOutput:
        """signal: (b, samples) waveform at the encoder's sample rate."""

    def sense(self, signal: Tensor, request: SensoryRequest) -> SensoryOutput:
        """The view of `signal` that `request` asks for. An encoder that can serve other views (a time window, a
        frequency band) overrides this; the default serves the whole signal only."""
        if request != SensoryRequest():
            raise EmberConfigError(f"{type(self).__name__} serves the whole signal only, not {request}: use an audio "
                                   "encoder (SpikingAudioEncoder, RateAudioEncoder, PretrainedAudioEncoder), or set "
                                   "model.init_args.max_rounds 1")
        return self(signal)


class ReasoningOutput(NamedTuple):
    answer: Tensor  # (b, s, d) latent answer tokens y
    halt: Tensor  # (b,) halting probability
    more_sensing: Tensor  # (b,) probability that another sensory round would help
    latent: Optional[Tensor] = None  # (b, s, d) latent z, where the core has one: a later round continues from it


class ReasoningCore(EmberPlugin):
    """TRM core: recursive refinement of answer y and latent z given x (SPEC 3.5)."""

    kind = "reasoning"
    d_model: int

    @abstractmethod
    def forward(self, x: Tensor, start: Optional[ReasoningOutput] = None) -> ReasoningOutput:
        """x: (b, s, d) input tokens (sensory tokens in the composite); start: the previous round's output (active
        perception: y and z carry across rounds while x is a new view), None for a fresh start."""

    def steps(self, x: Tensor, start: Optional[ReasoningOutput] = None) -> Iterator[ReasoningOutput]:
        """The output after each supervision step of one `forward` (deep supervision in the composite scores each);
        the last is forward's. The default, for a core without steps: forward's output alone."""
        yield self(x, start)


class ProceduralMemory(EmberPlugin):
    """PM: fast low-rank weights inside a layer, committed at plasticity boundaries (SPEC 3.2)."""

    kind = "procedural_memory"

    @abstractmethod
    def forward(self, x: Tensor, state: StateBase | None = None) -> tuple[Tensor, StateBase]:
        """x: (b, n, d) -> read-out (b, n, d) and the memory state (carries state)."""


class EpisodicMemory(EmberPlugin):
    """EM: a bounded vector store per block, written at plasticity boundaries (SPEC 3.2)."""

    kind = "episodic_memory"

    @abstractmethod
    def forward(self, x: Tensor, state: StateBase | None = None) -> tuple[Tensor, StateBase]:
        """x: (b, n, d) -> read-out (b, n, d) and the memory state (carries state)."""


class SpanSummary(NamedTuple):
    """What a neuromodulator reads at a plasticity boundary, per stream."""

    pooled: Tensor  # (b, d) mean input of the span
    surprise: Tensor  # (b,) how badly the memory predicted the span: 0 exactly, 1 not at all
    occupancy: Tensor  # (b,) mean slot strength in [0, 1]
    modulation: Tensor | None = None  # (b, k) external signals (sensory arousal/valence/threat), or None


class Modulation(NamedTuple):
    """A neuromodulator's decision, per stream; each (b,)."""

    g: Tensor  # commit gate in [0, 1]
    eta: Tensor  # write strength in [0, 1]
    lam: Tensor  # decay of existing strengths in [0, 1]
    tau: Tensor  # slot-selection temperature > 0
    aux_loss: Tensor | None = None  # scalar added to the training loss (e.g. a commit budget)


class Neuromodulator(EmberPlugin):
    """Decides when, how strongly and where a memory writes (SPEC 3.2)."""

    kind = "neuromodulator"

    @abstractmethod
    def forward(self, summary: SpanSummary) -> Modulation:
        """Read the span summary, return the commit decision."""


class Consolidator(EmberPlugin):
    """Sleep-phase distillation of fast memory into slow weights (SPEC 3.7)."""

    kind = "consolidator"

    @abstractmethod
    def consolidate(self, model: LightningModule, episodes: list, general: list, seed: int = 0) -> dict[str, float]:
        """Distil the memory-ON model into its memory-OFF slow weights; returns metrics.

        episodes: the lived sessions to replay (ember.sleep.Episode: bytes and the memory state they started
        from); general: general-text byte sequences (n,) that protect what the slow weights already know (may be
        empty); seed: the sleep's own random draws (equal seeds give equal sleeps)."""


# ---- parts that plugins of other kinds share -------------------------------------------------
class Anchor(ABC):
    """A consolidator's penalty that keeps the slow weights near what they knew before a sleep (SPEC 3.7), chosen
    by class in the consolidator's `anchor` (plugins/consolidation/anchors.py)."""

    @abstractmethod
    def prepare(self, model: nn.Module, params: dict[str, nn.Parameter], general: list[Tensor]) -> None:
        """Before the sleep: remember the pre-sleep weights `params` (and whatever else the penalty needs; general
        is general text, byte sequences (n,))."""

    @abstractmethod
    def penalty(self, params: dict[str, nn.Parameter]) -> Tensor:
        """The penalty () on the current weights `params`."""


class RecursionNetwork(nn.Module):
    """The network f of a TinyRecursiveCore: (b, s, d) -> (b, s, d), applied n + 1 times per cycle.
    Subclasses (plugins/reasoning/networks.py) take (d_model, seq_len) first."""


class Example(NamedTuple):
    """One generated example. tokens: (n + 1,) int64; the others (n,) over the targets tokens[1:]."""

    tokens: np.ndarray
    loss_mask: np.ndarray  # bool: target is an answer byte
    answer_id: np.ndarray  # int64: index of the answer within the example, -1 elsewhere
    group: np.ndarray  # int64: report group of the answer (index into group_names), -1 elsewhere


Split = Literal["train", "val", "test"]


class MemoryTask:
    """A generated memory benchmark (data_modules/): one scored `Example` per seed. Subclasses set `name`,
    `group_names`, `seq_len` and define `sample`."""

    name: str = "task"
    group_names: list[str] = ["all"]
    seq_len: int

    def sample(self, rng: np.random.Generator, split: Split = "train") -> Example:
        """One example of exactly seq_len + 1 tokens. A task whose values must differ between the splits (values
        never seen in training) draws them from `split`'s share; the others may ignore it."""
        raise NotImplementedError

    def chance(self) -> Optional[float]:
        """Exact-answer accuracy of the best guess without the session (None when not defined)."""
        return None


PLUGIN_KINDS: dict[str, type[EmberPlugin]] = {
    cls.kind: cls for cls in (SensoryEncoder, ReasoningCore, LanguageBackbone, ProceduralMemory,
                              EpisodicMemory, Neuromodulator, Consolidator)
}
