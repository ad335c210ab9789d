"""The ``standard`` training augmentation: photometric jitter plus one small random affine
(rotation and scale-crop) applied to image and depth together.

Geometry is a single ``grid_sample`` with the same sampling grid for both: the image is
sampled bilinearly, the depth with ``nearest``, so every output depth is a copy of one input
depth (or 0, invalid, outside the image): invalid pixels stay invalid and are never
interpolated into valid ones. Depth values are not rescaled with the zoom: the loss and the
metric are scale invariant. The ranges follow NYU fine-tuning practice (BTS, AdaBins: rotation
within +-2.5 degrees; colour jitter of about +-20%).

Random draws come from torch's global generator, which the training loader seeds per sample
(``trainables.sampler.SeededSamples``: from the trial seed, the epoch and the sample's place), so
a resumed trial, at any step and with any number of loader workers, draws the same augmentations
as an unbroken one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from trainables.data import IMAGENET_MEAN, IMAGENET_STD

MAX_ROTATION_DEG = 2.5
MAX_ZOOM = 1.2  # scale-crop: a window of 1/1.2 .. 1 of the image's side, resized back
JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05}


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def affine_theta(height: int, width: int, angle_deg: float, zoom: float, shift: tuple[float, float]
                 ) -> torch.Tensor:
    """The (1, 2, 3) ``affine_grid`` matrix that maps output to input coordinates: a rotation by
    ``angle_deg`` in pixel space (so not sheared on non-square images), a zoom-in by ``zoom``
    >= 1 and a shift ``(x, y)`` in normalised [-1, 1] units."""
    a = math.radians(angle_deg)
    cos, sin = math.cos(a) / zoom, math.sin(a) / zoom
    return torch.tensor([[[cos, -sin * height / width, shift[0]],
                          [sin * width / height, cos, shift[1]]]], dtype=torch.float32)


def warp_pair(image: torch.Tensor, depth: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``theta`` to image (C, H, W) bilinearly and to depth (1, H, W) by nearest sampling."""
    grid = F.affine_grid(theta, [1, 1, *image.shape[-2:]], align_corners=False)  # (1, H, W, 2)
    image = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    depth = F.grid_sample(depth[None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    return image, depth


def random_geometry(image: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A random small rotation and scale-crop of the pair (same size out)."""
    zoom = _uniform(1.0, MAX_ZOOM)
    room = 1.0 - 1.0 / zoom  # how far the zoomed window can move and stay inside
    theta = affine_theta(image.shape[-2], image.shape[-1], _uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG), zoom,
                         (_uniform(-room, room), _uniform(-room, room)))
    return warp_pair(image, depth, theta)


def photometric(image: torch.Tensor) -> torch.Tensor:
    """Colour jitter of an ImageNet-normalised image (3, H, W), done on its [0, 1] RGB."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = (image * std + mean).clamp(0, 1)
    rgb = TF.adjust_brightness(rgb, _uniform(1 - JITTER["brightness"], 1 + JITTER["brightness"]))
    rgb = TF.adjust_contrast(rgb, _uniform(1 - JITTER["contrast"], 1 + JITTER["contrast"]))
    rgb = TF.adjust_saturation(rgb, _uniform(1 - JITTER["saturation"], 1 + JITTER["saturation"]))
    rgb = TF.adjust_hue(rgb, _uniform(-JITTER["hue"], JITTER["hue"]))
    return (rgb - mean) / std


def standard(image: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``augment=standard`` after the flip: geometry on both, then colour on the image."""
    image, depth = random_geometry(image, depth)
    return photometric(image), depth
