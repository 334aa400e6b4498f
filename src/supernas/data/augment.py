"""Augmentation policies: what ``data.augment`` names, resolved for one data set and image size.

A policy is a name or a mapping of transforms with their parameters:

- ``auto`` (the default): the data set's standard recipe. Fashion-MNIST pads by 2 and crops
  back with a flip, CIFAR pads by 4 with a flip (the published recipes); an ImageFolder gets
  ``light`` for images of 64 px or less and a random resized crop without flip above; synthetic
  patterns are left alone. ImageFolders never flip by default: a mirrored digit or word is
  another class or no class.
- ``none``: no augmentation (``false`` means the same, ``true`` means ``auto``).
- ``light``: zero-pad by an eighth of the side and crop back at a random offset; no flip.
- ``imagenet``: a random resized crop of 8-100% of the area and a flip, the ImageNet recipe.
  Crops that small lose most of a 32-px image, so it is the default for large images only
  (figures in docs/data.md).
- a mapping ``{crop_padding: 4, flip: false, scale: [0.35, 1.0]}``: any of the three
  transforms, each off when left out.

A policy with a resized crop evaluates on a centre crop of ``0.875`` of a resize (the ImageNet
protocol); the others evaluate on the whole image resized to the resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from supernas.errors import DataError

POLICIES = ("auto", "none", "light", "imagenet")
SMALL_IMAGE = 64  # side length up to which an ImageFolder's auto policy is light
IMAGENET_SCALE = (0.08, 1.0)
CROP_RATIO = 0.875  # evaluation of a resized-crop policy: resize to size / 0.875, crop the centre

PolicySpec = bool | str | dict[str, Any]


@dataclass(frozen=True)
class Augment:
    """The random transforms of the weight split, and the evaluation crop that goes with them."""

    crop_padding: int = 0  # zero-pad by this many px and crop back at a random offset
    flip: bool = False  # mirror left-right with probability 0.5
    scale: tuple[float, float] | None = None  # random resized crop: range of the area kept

    def __post_init__(self) -> None:
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int):
            raise DataError(f"data.augment.crop_padding = {self.crop_padding!r} is not an int")
        if self.crop_padding < 0:
            raise DataError(f"data.augment.crop_padding = {self.crop_padding} is negative")
        if not isinstance(self.flip, bool):
            raise DataError(f"data.augment.flip = {self.flip!r} is not true or false")
        if self.scale is not None and not _is_area_range(self.scale):
            raise DataError(
                f"data.augment.scale = {self.scale!r} must be [low, high] with 0 < low <= high <= 1"
            )

    @property
    def eval_crop_ratio(self) -> float:
        """Share of the evaluation resize that the centre crop keeps (1.0: no crop)."""
        return CROP_RATIO if self.scale is not None else 1.0

    def describe(self) -> str:
        parts = []
        if self.scale is not None:
            parts.append(f"random resized crop {self.scale[0]:g}-{self.scale[1]:g} of the area")
        if self.crop_padding:
            parts.append(f"pad {self.crop_padding} px and crop")
        if self.flip:
            parts.append("horizontal flip")
        return ", ".join(parts) or "none"


def _is_area_range(scale: object) -> bool:
    if not isinstance(scale, tuple | list) or len(scale) != 2:
        return False
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in scale):
        return False
    low, high = scale
    return math.isfinite(low) and math.isfinite(high) and 0 < low <= high <= 1


def check_policy(policy: PolicySpec) -> None:
    """Refuses a policy that no data set could use, before anything is loaded."""
    if isinstance(policy, bool):
        return
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise DataError(f"data.augment = {policy!r} is not one of {', '.join(POLICIES)}")
        return
    if isinstance(policy, dict):
        _from_mapping(policy)
        return
    raise DataError(f"data.augment = {policy!r} is not a policy name, true/false or a mapping")


def _from_mapping(policy: dict[str, Any]) -> Augment:
    unknown = set(policy) - {"crop_padding", "flip", "scale"}
    if unknown:
        raise DataError(
            f"data.augment: unknown transform {sorted(unknown)[0]!r}; known: crop_padding, flip, "
            "scale"
        )
    scale = policy.get("scale")
    return Augment(
        crop_padding=policy.get("crop_padding", 0),
        flip=policy.get("flip", False),
        scale=tuple(scale) if isinstance(scale, list) else scale,
    )


def resolve(policy: PolicySpec, default: Augment, size: int) -> Augment:
    """The transforms a policy means for a data set whose ``auto`` recipe is ``default``, on
    images of ``size`` px (the resolution the loaders produce)."""
    check_policy(policy)
    if isinstance(policy, dict):
        return _from_mapping(policy)
    if policy is True or policy == "auto":
        return default
    if policy is False or policy == "none":
        return Augment()
    if policy == "light":
        return _light(size)
    return Augment(flip=True, scale=IMAGENET_SCALE)


def _light(size: int) -> Augment:
    return Augment(crop_padding=max(1, round(size / 8)))


def folder_default(native: int, size: int) -> Augment:
    """``auto`` for an ImageFolder of images ``native`` px on their shorter side, padded after
    the resize to ``size``: light on small images, a resized crop on large ones, no flip."""
    if native <= SMALL_IMAGE:
        return _light(size)
    return Augment(scale=IMAGENET_SCALE)
