"""The splits of a data set and the three Lightning loader hooks of a data module that serves every split
from one `_loader(split)`."""

from __future__ import annotations

from torch.utils.data import DataLoader

from ember.base import Split

SPLITS = {"train": 0, "val": 1, "test": 2}  # the random stream of each split: examples never repeat across splits


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
