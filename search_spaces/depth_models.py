"""Does segmentation transfer beat depth pretraining? The paper fine-tunes encoders pretrained for
segmentation (and ImageNet) on depth; here the depth models the field uses now get the same
recipe (lambda 0.5, AdamW lr 1e-4, weight decay 1e-3, 4 epochs, effective batch 16 = 2 x 8, their
released weights) beside the paper's best: segformer_b5 (ADE20k SegFormer) and resnet_unet
(ImageNet ResNet-50).

- Depth Anything V2, relative (disparity) and metric indoor (Hypersim), Small / Base / Large;
- DPT / MiDaS 3.0, ViT-L (large) and ViT-B on a ResNet-50 stem (hybrid);
- GLPN, the NYU and the KITTI checkpoints: a SegFormer encoder with a depth decoder. On NYU the
  ``glpn-nyu`` row is not transfer (it was trained on NYU Depth v2's training scenes): read it as
  in-domain depth pretraining, an upper reference.

Each trial's ``tag`` names its checkpoint (the leaderboard shows it). ``--arch`` keeps the
checkpoints of the named architectures (an architecture not listed here runs at its defaults).
Relative models start from their own disparity (``docs/models.md``); papers score them after
alignment (the trial setting ``align``, ``docs/metrics.md``). Licences differ: Depth Anything V2 Base/Large
are CC-BY-NC-4.0, SegFormer's weights NVIDIA's non-commercial licence (``depth-grid models``).
"""

from ray import tune

from search_spaces.profiles import PAPER

DESCRIPTION = ("does segmentation transfer beat depth pretraining? Depth Anything V2 (relative, metric; S/B/L), "
               "DPT, GLPN vs segformer_b5, resnet_unet at the paper's settings")
# tag -> (arch, model_kwargs): every released checkpoint of the depth-pretrained architectures.
VARIANTS: dict[str, tuple[str, dict]] = {
    **{f"depth_anything_v2-{s}": ("depth_anything_v2", {"size": s}) for s in ("small", "base", "large")},
    **{f"depth_anything_v2_metric-{s}": ("depth_anything_v2_metric", {"size": s}) for s in ("small", "base", "large")},
    "dpt-large": ("dpt", {"size": "large"}),
    "dpt-hybrid": ("dpt", {"size": "hybrid"}),
    "glpn-nyu": ("glpn", {"dataset": "nyu"}),
    "glpn-kitti": ("glpn", {"dataset": "kitti"}),
    "segformer_b5": ("segformer_b5", {}),
    "resnet_unet": ("resnet_unet", {}),
}
ARCHS = list(dict.fromkeys(arch for arch, _ in VARIANTS.values()))
SEARCH = {"algorithm": "grid", "num_samples": 1, "seed": 0}


def _variant(tag: str) -> tuple[str, dict]:
    return VARIANTS.get(tag, (tag, {}))  # an --arch not listed here: its own defaults


def _arch(config) -> str:
    return _variant(config["tag"])[0]


def _model_kwargs(config) -> dict:
    return dict(_variant(config["tag"])[1])


def space(archs: list[str] | None = None) -> dict:
    wanted = list(archs or ARCHS)
    tags = [tag for tag, (arch, _) in VARIANTS.items() if arch in wanted]
    tags += [arch for arch in wanted if arch not in ARCHS]
    return {
        **PAPER,
        "tag": tune.grid_search(tags),
        "arch": tune.sample_from(_arch),
        "model_kwargs": tune.sample_from(_model_kwargs),
    }
