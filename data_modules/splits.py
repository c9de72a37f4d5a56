"""The splits of a data set and the three Lightning loader hooks of a data module that serves every split
from one `_loader(split)`."""

from __future__ import annotations

from torch.utils.data import DataLoader

from ember.base import Split
from ember.errors import EmberConfigError

SPLITS = {"train": 0, "val": 1, "test": 2}  # the random stream of each split: examples never repeat across splits


def check_loader_args(batch_size: int, num_workers: int, seed: int):
    """Refuse loader settings no DataLoader or seeded generator takes, naming the fix: batch_size >= 1,
    num_workers >= 0 (0: load in the main process), seed >= 0 (numpy's generators refuse negative seeds)."""
    if batch_size < 1 or num_workers < 0 or seed < 0:
        raise EmberConfigError(f"batch_size={batch_size} must be >= 1, num_workers={num_workers} >= 0 (0 loads in "
                               f"the main process) and seed={seed} >= 0")


class SplitLoaders:
    """Mixin (list it before LightningDataModule): train/val/test dataloaders from `self._loader(split)`."""

    def _loader(self, split: Split) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
