"""Image embeddings for the leakage-free split, cached per image content.

Each RGB file is embedded once with torchvision's MobileNetV2 (ImageNet weights,
``MobileNet_V2_Weights.IMAGENET1K_V1``): the whole (cropped) frame is resized to ``input_size``
(no centre crop, so the borders of a frame count too), passed through ``features``,
global-average-pooled to 1280 values and L2-normalised, so a dot product is a cosine similarity.

Cache: ``<cache_dir>/embeddings/<key>/shard-*.npz``, where ``<key>`` names the model, the input
size and the crop. Every shard holds ``keys`` (SHA-1 of the RGB file's bytes) and ``embeddings``
(float32). A run that embeds new images appends one new shard, written atomically, so a re-run
embeds nothing and a grown dataset embeds only its new images; concurrent runs never write the
same file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from grid.split import INPUT_SIZE  # the embedder's input size (the package holds it: no torch)
from trainables.data import DatasetSpec, Item, load_rgb
from trainables.dataset import normalize, resize_image
from trainables.io import atomic_write

MODEL_ID = "torchvision/mobilenet_v2/IMAGENET1K_V1/avgpool"
EMBED_DIM = 1280
SHARD_SIZE = 4096  # images per cache shard (20 MB)


def file_sha1(path: Path) -> str:
    """SHA-1 of a file's bytes (the content key of its embedding)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha1").hexdigest()


def cache_key(input_size: tuple[int, int], crop: tuple[int, int, int, int] | None) -> str:
    """Folder name of the embeddings made with this model, input size and crop."""
    desc = json.dumps({"model": MODEL_ID, "size": list(input_size), "crop": crop and list(crop)})
    return "mobilenet_v2-" + hashlib.sha1(desc.encode()).hexdigest()[:12]


class EmbeddingCache:
    """Append-only store of ``content hash -> embedding`` made of ``.npz`` shards."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def load(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as z:
                    keys, embs = z["keys"], z["embeddings"]
            except (OSError, ValueError, KeyError):
                continue  # a damaged shard only costs re-embedding its images
            out.update(zip(keys.tolist(), embs, strict=True))
        return out

    def add(self, keys: list[str], embeddings: np.ndarray) -> Path | None:
        if not keys:
            return None
        name = hashlib.sha1("".join(sorted(keys)).encode()).hexdigest()[:16]
        path = self.folder / f"shard-{name}-{os.getpid()}.npz"
        with atomic_write(path, "wb") as fh:
            np.savez(fh, keys=np.array(keys), embeddings=embeddings.astype(np.float32))
        return path


def build_embedder(device: torch.device) -> torch.nn.Module:
    """MobileNetV2 ``features`` + global average pooling, in eval mode on ``device``."""
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    from trainables.weights import ensure_mobilenet_v2

    ensure_mobilenet_v2()  # a clear error (how to fetch) instead of a failed download
    net = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)
    model = torch.nn.Sequential(net.features, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    return model.eval().to(device)


class _Frames(torch.utils.data.Dataset):
    def __init__(self, items: list[Item], spec: DatasetSpec, size: tuple[int, int]) -> None:
        self.items, self.spec, self.size = items, spec, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        return resize_image(normalize(load_rgb(self.items[i], self.spec)), self.size)  # (3, h, w)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def embed_images(
    items: list[Item],
    spec: DatasetSpec,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    input_size: tuple[int, int] = INPUT_SIZE,
    model: torch.nn.Module | None = None,
) -> np.ndarray:
    """Embed ``items`` with no caching: float32 (N, 1280), rows L2-normalised."""
    dev = resolve_device(device)
    model = model if model is not None else build_embedder(dev)
    workers = min(4, os.cpu_count() or 1) if dev.type == "cuda" else 0
    loader = torch.utils.data.DataLoader(
        _Frames(items, spec, input_size), batch_size=batch_size, num_workers=workers,
        pin_memory=dev.type == "cuda")
    out = []
    for x in loader:  # (B, 3, h, w)
        feats = model(x.to(dev, non_blocking=True)).float()  # (B, 1280)
        out.append(torch.nn.functional.normalize(feats, dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, EMBED_DIM), np.float32)


@dataclass(frozen=True)
class Embeddings:
    """Embeddings of a list of items, in the same order, and what it cost."""

    vectors: np.ndarray  # (N, 1280) float32, unit rows
    hashes: list[str]  # SHA-1 of each RGB file
    computed: int  # images embedded in this call (the rest came from the cache)
    model_id: str


def embed_items(
    items: list[Item],
    spec: DatasetSpec,
    *,
    cache_dir: Path | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    input_size: tuple[int, int] = INPUT_SIZE,
    hashes: list[str] | None = None,
) -> Embeddings:
    """Embeddings of ``items``, embedding only images whose content is not cached yet.

    Args:
        cache_dir: root of the cache (``embeddings/<key>/`` below it); ``None`` disables it.
        hashes: the items' ``file_sha1`` when the caller already has them.
    """
    hashes = hashes if hashes is not None else [file_sha1(it.rgb) for it in items]
    key = cache_key(input_size, spec.crop)
    store = EmbeddingCache(Path(cache_dir) / "embeddings" / key) if cache_dir is not None else None
    known = store.load() if store is not None else {}
    todo: dict[str, Item] = {}
    for h, it in zip(hashes, items, strict=True):
        if h not in known and h not in todo:  # identical files are embedded once
            todo[h] = it
    keys, dev = list(todo), resolve_device(device)
    model = build_embedder(dev) if keys else None
    # disable=None: a bar on a terminal, nothing in logs and CI
    with tqdm(total=len(keys), unit="img", desc="split: embedding", disable=None) as bar:
        for s in range(0, len(keys), SHARD_SIZE):  # one shard per chunk: an interrupted run keeps its work
            chunk = keys[s:s + SHARD_SIZE]
            vecs = embed_images([todo[k] for k in chunk], spec, batch_size=batch_size, device=dev,
                                input_size=input_size, model=model)
            known.update(zip(chunk, vecs, strict=True))
            if store is not None:
                store.add(chunk, vecs)
            bar.update(len(chunk))
    vectors = np.stack([known[h] for h in hashes]).astype(np.float32, copy=False)
    model_id = f"{MODEL_ID}@{input_size[0]}x{input_size[1]}"
    return Embeddings(vectors, hashes, len(todo), model_id)
