"""A training order that a checkpoint can stop and resume in the middle of an epoch.

``EpochSampler`` draws epoch E's order as a function of ``(seed, E)`` alone and can start at an
offset into it; ``SeededSamples`` draws each sample's augmentation from a seed of its own,
``(seed, E, position in the order)``. Together a trial resumed at step S of epoch E reads the
same images with the same flips and jitter as one never stopped, whatever the number of loader
workers (each worker's own random stream depends on how many samples it already drew, which a
checkpoint in the main process cannot see).

Written here rather than taken from a library: torchdata's ``StatefulDataLoader`` (which saves
its sampler's and workers' positions) and mosaicml-streaming's resumable order are not
dependencies of this project (nor installed where the trials run), and the part needed, a
permutation of ``range(n)`` keyed by ``(seed, epoch)`` with an offset, is a few lines.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def _key(*parts: int) -> int:
    """A well-mixed 63-bit seed from small integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochSampler(Sampler[tuple[int, int]]):
    """A shuffled order of ``range(n)`` per epoch, a function of ``(seed, epoch)``; iteration
    starts at ``offset`` (samples already trained on in this epoch). Yields ``(index, sample
    seed)`` pairs for ``SeededSamples``. ``len`` is always ``n``, so the loader's length (and
    the schedule built from it) is the same before and after a resume, and on every rank.

    ``shard(batch, rank, world)``: rank ``rank`` of a data-parallel trial yields only the
    micro-batches (``batch`` consecutive positions each) ``rank, rank + world, ...`` of the order,
    so step s of the epoch trains on the same samples as in a one-process trial."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.epoch, self.offset = 0, 0
        self.batch, self.rank, self.world = 1, 0, 1

    def shard(self, batch: int, rank: int, world: int) -> EpochSampler:
        self.batch, self.rank, self.world = batch, rank, world
        return self

    def set_epoch(self, epoch: int, offset: int = 0) -> None:
        if not 0 <= offset <= self.n:
            raise ValueError(f"offset {offset} is outside an epoch of {self.n} samples")
        self.epoch, self.offset = epoch, offset

    def order(self) -> list[int]:
        generator = torch.Generator().manual_seed(_key(self.seed, self.epoch))
        return torch.randperm(self.n, generator=generator).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self.order()
        for position in range(self.offset, self.n):
            if (position // self.batch) % self.world == self.rank:  # this rank's micro-batches
                yield order[position], _key(self.seed, self.epoch, position)

    def __len__(self) -> int:
        return self.n


class SeededSamples(Dataset):
    """``dataset[index]`` drawn with torch's CPU generator seeded by the sample's own seed (the
    ``(index, seed)`` pairs ``EpochSampler`` yields). The process's own random state is put back
    afterwards: in the main process (``num_workers=0``) the model's dropout draws stay those of a
    run that loads no data, so a checkpoint's saved torch state is the whole story."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        with torch.random.fork_rng(devices=[]):  # the CPU generator only: CUDA's is left alone
            torch.random.default_generator.manual_seed(seed)
            return self.dataset[index]
