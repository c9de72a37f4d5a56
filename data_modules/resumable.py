"""ResumableLoader: a training DataLoader that a run resumed from a mid-epoch checkpoint continues where it stopped.

Lightning treats a training loader with `state_dict`/`load_state_dict` as stateful: it saves the state in every
checkpoint (`loops.fit_loop.state_dict.combined_loader`) and loads it on `--ckpt_path`. A plain DataLoader has
none, so a resumed run starts the epoch again at batch 0 and trains on batches it has already seen.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from torch.utils.data import DataLoader, IterableDataset


class ResumableLoader(DataLoader):
    """A DataLoader (same arguments) whose state is the number of batches the current pass has served; after
    `load_state_dict` the next pass starts that many batches in.

    Exact when a pass's order is a function of (seed, epoch): a sequential order, EpochSampler, Lightning's
    DistributedSampler. Not with a RandomSampler, whose generator state is not saved. The skipped batches of a
    map-style dataset are never loaded (their indices are drawn from the batch sampler and dropped); those of an
    iterable dataset are read and dropped.
    """

    _served = 0  # batches the current pass has yielded
    _skip = 0  # batches the next pass skips (set by load_state_dict)

    def __iter__(self) -> Iterator:
        skip, self._skip = self._skip, 0
        return self._counted(skip)

    def _counted(self, skip: int) -> Iterator:
        self._served = skip
        for batch in self._from(skip):
            self._served += 1
            yield batch

    def _from(self, skip: int) -> Iterator:
        """This pass from batch `skip` on."""
        if not skip:
            return super().__iter__()
        if self.batch_sampler is None or isinstance(self.dataset, IterableDataset):
            batches = super().__iter__()
            for _ in range(skip):
                next(batches, None)
            return batches
        rest = list(itertools.islice(self.batch_sampler, skip, None))  # the pass's remaining batches of indices
        return iter(DataLoader(self.dataset, batch_sampler=rest, num_workers=self.num_workers,
                               collate_fn=self.collate_fn, pin_memory=self.pin_memory, timeout=self.timeout,
                               worker_init_fn=self.worker_init_fn, multiprocessing_context=self.multiprocessing_context,
                               generator=self.generator, prefetch_factor=self.prefetch_factor,
                               pin_memory_device=self.pin_memory_device))

    def state_dict(self) -> dict[str, int]:
        """{"batches": batches served in this pass}; 0 once a pass is complete (the next one starts afresh)."""
        return {"batches": pass_position(self._served, self)}

    def load_state_dict(self, state: dict[str, int]):
        self._skip = int(state["batches"])


def pass_position(served: int, loader) -> int:
    """`served` batches into passes of len(loader) batches (when it has a length): where the current pass stands."""
    try:
        return served % len(loader) if len(loader) else served
    except TypeError:  # an iterable dataset without a length
        return served
