"""Registered search spaces: the papers' spaces and small ones for 28x28 / 32x32 data.

Each preset is a function returning a `SearchSpace`, registered in `SPACES`; its docstring cites
the table it reproduces and how ours differs. `stage(...)` writes one table row: ``n`` blocks of
which the first has the row's stride and, with ``min_depth``, the last ``n - min_depth`` may be
skipped.
"""

from __future__ import annotations

from collections.abc import Callable

from supernas.errors import SpaceError
from supernas.registry import Registry
from supernas.space.space import BlockSpec, HeadSpec, SearchSpace, StemSpec

SPACES: Registry[Callable[[], SearchSpace]] = Registry("space", SpaceError)


def get_space(name: str) -> SearchSpace:
    """The preset called ``name`` (a `SpaceError` listing the known ones otherwise)."""
    return SPACES.get(name)()


def stage(
    index: int,
    n: int,
    stride: int,
    out_channels: tuple[int, ...],
    expansions: tuple[float, ...],
    kernel_sizes: tuple[int, ...],
    *,
    min_depth: int | None = None,
    attentions: tuple[int, ...] = (0,),
    activations: tuple[str, ...] = ("relu",),
) -> list[BlockSpec]:
    """One table row: ``n`` blocks, stride on the first, optional blocks after ``min_depth``."""
    min_depth = n if min_depth is None else min_depth
    return [
        BlockSpec(
            stage=index,
            stride=stride if i == 0 else 1,
            out_channels=out_channels,
            expansions=expansions,
            kernel_sizes=kernel_sizes,
            attentions=attentions,
            activations=activations,
            optional=i >= min_depth,
        )
        for i in range(n)
    ]


@SPACES.register("fmnist_small")
def fmnist_small() -> SearchSpace:
    """A small space for 28x28 grey images (Fashion-MNIST): children of 1.4M to 19M MACs.

    Every choice kind is searchable (width, expansion, kernel, attention, activation, depth,
    resolution), so the demo and the tests exercise the whole language on real data in minutes.
    """
    acts = ("relu", "hswish")
    blocks = [
        *stage(1, 1, 2, (16, 24), (3, 6), (3, 5), attentions=(0, 1), activations=acts),
        *stage(
            2,
            2,
            2,
            (32, 40, 48),
            (3, 4, 6),
            (3, 5),
            min_depth=1,
            attentions=(0, 1),
            activations=acts,
        ),
        *stage(
            3,
            3,
            1,
            (48, 64, 80),
            (3, 4, 6),
            (3, 5),
            min_depth=1,
            attentions=(0, 1),
            activations=acts,
        ),
    ]
    return SearchSpace(
        name="fmnist_small",
        in_channels=1,
        num_classes=10,
        resolutions=(24, 28),
        stem=StemSpec(out_channels=(16, 24), stride=1),
        blocks=tuple(blocks),
        head=HeadSpec(hidden_channels=(128, 256), dropout=0.1),
        description="Small MBConv space for 28x28x1 images (Fashion-MNIST).",
    )


@SPACES.register("fmnist_bignas")
def fmnist_bignas() -> SearchSpace:
    """BigNAS's space shrunk for 28x28 grey images: children of 1.1M to 23M MACs.

    Laid out like `bignas`: one value of width, depth, kernel and expansion per stage
    (``tie_stages``), swish, a shortcut in every block (``shortcut="always"``, so every block's
    last BN gamma can start at zero), SE in the later stages, elastic stem, head and resolution.
    """
    swish = ("swish",)
    rows = [
        ((16, 24), 2, 2, (0,)),
        ((32, 40, 48), 3, 2, (1,)),
        ((64, 80), 3, 1, (1,)),
    ]
    blocks = []
    for index, (widths, n, stride, attentions) in enumerate(rows, start=1):
        blocks += stage(
            index,
            n,
            stride,
            widths,
            (3, 4, 6),
            (3, 5),
            min_depth=1,
            attentions=attentions,
            activations=swish,
        )
    return SearchSpace(
        name="fmnist_bignas",
        in_channels=1,
        num_classes=10,
        resolutions=(20, 24, 28),
        stem=StemSpec(out_channels=(16, 24), stride=1, activation="swish"),
        blocks=tuple(blocks),
        head=HeadSpec(hidden_channels=(128, 256), activation="swish", dropout=0.1),
        shortcut="always",
        tie_stages=True,
        description="BigNAS-style tied-stage space for 28x28x1 images (Fashion-MNIST).",
    )


@SPACES.register("cifar_small")
def cifar_small() -> SearchSpace:
    """A small space for 32x32 colour images (CIFAR-10/100): children of 2.7M to 33M MACs."""
    acts = ("relu", "hswish")
    blocks = [
        *stage(1, 1, 2, (16, 24), (3, 6), (3, 5), activations=acts),
        *stage(
            2,
            3,
            2,
            (24, 32, 40),
            (3, 4, 6),
            (3, 5),
            min_depth=1,
            attentions=(0, 1),
            activations=acts,
        ),
        *stage(
            3,
            3,
            1,
            (48, 64, 80),
            (3, 4, 6),
            (3, 5),
            min_depth=1,
            attentions=(0, 1),
            activations=acts,
        ),
        *stage(
            4, 2, 2, (96, 128), (3, 4, 6), (3, 5), min_depth=1, attentions=(0, 1), activations=acts
        ),
    ]
    return SearchSpace(
        name="cifar_small",
        in_channels=3,
        num_classes=10,
        resolutions=(28, 32),
        stem=StemSpec(out_channels=(16, 24), stride=1),
        blocks=tuple(blocks),
        head=HeadSpec(hidden_channels=(256, 512), dropout=0.1),
        description="Small MBConv space for 32x32x3 images (CIFAR-10/100).",
    )


@SPACES.register("proxyless_mobile")
def proxyless_mobile() -> SearchSpace:
    """ProxylessNAS's mobile space (Cai et al., ICLR 2019; reference `super_proxyless.py`).

    Stem 3x3/2 to 32, a fixed MBConv1 k3 to 16, then stages of widths 32, 40, 80, 96, 192, 320
    with 4, 4, 4, 4, 4, 1 blocks and first strides 2, 2, 2, 1, 2, 1. The released ProxylessNAS-
    Mobile model (``proxyless_mobile.config``) and NNI use 32 for the first stage; the search
    code's default is 24. With 32 the released model is a child of this space. Each mixed block
    chooses kernel {3, 5, 7} x expansion {3, 6}; the zero op (a skippable block) exists where
    stride is 1 and widths match. Head 1x1 to 1280, ReLU6. Hidden widths are ``round(C_in * e)``
    (no rounding to 8). Separate depthwise weights per kernel size; the reference also keeps
    separate expand/project weights per (kernel, expansion) candidate, which ours share.
    """
    relu6 = ("relu6",)
    blocks = stage(1, 1, 1, (16,), (1,), (3,), activations=relu6)
    rows = [(32, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1)]
    for index, (width, n, stride) in enumerate(rows, start=2):
        blocks += stage(
            index, n, stride, (width,), (3, 6), (3, 5, 7), min_depth=1, activations=relu6
        )
    return SearchSpace(
        name="proxyless_mobile",
        in_channels=3,
        num_classes=1000,
        resolutions=(224,),
        stem=StemSpec(out_channels=(32,), stride=2, activation="relu6"),
        blocks=tuple(blocks),
        head=HeadSpec(hidden_channels=(1280,), activation="relu6"),
        kernel_sharing="separate",
        width_divisor=1,
        description="ProxylessNAS mobile space (ImageNet, 224 px).",
    )


@SPACES.register("bignas")
def bignas() -> SearchSpace:
    """BigNAS's space (Yu et al., ECCV 2020), as tabulated by the pytorch-BigNAS port.

    Per stage: widths, depth, kernel and expansion are elastic, one value per stage
    (``tie_stages``); swish, SE everywhere, a shortcut in every block (``shortcut="always"``),
    centre-cropped kernels, OFA width rounding. Resolutions {192, 224, 288, 320} follow the port;
    the paper may also list 256 (unverified).
    """
    se, swish = (1,), ("swish",)
    rows = [
        ((16, 24), 1, 2, 1, (1,), (3,)),
        ((24, 32), 2, 3, 2, (6,), (3,)),
        ((40, 48), 2, 3, 2, (6,), (3, 5)),
        ((80, 88), 2, 4, 2, (6,), (3, 5)),
        ((112, 120, 128), 2, 6, 1, (6,), (3, 5)),
        ((192, 200, 208, 216), 2, 6, 2, (6,), (3, 5)),
        ((320, 352), 1, 2, 1, (6,), (3, 5)),
    ]
    blocks = []
    for index, (widths, min_depth, n, stride, expansions, kernels) in enumerate(rows, start=1):
        blocks += stage(
            index,
            n,
            stride,
            widths,
            expansions,
            kernels,
            min_depth=min_depth,
            attentions=se,
            activations=swish,
        )
    return SearchSpace(
        name="bignas",
        in_channels=3,
        num_classes=1000,
        resolutions=(192, 224, 288, 320),
        stem=StemSpec(out_channels=(32, 40), stride=2, activation="swish"),
        blocks=tuple(blocks),
        head=HeadSpec(hidden_channels=(1280, 1408), activation="swish", dropout=0.2),
        shortcut="always",
        tie_stages=True,
        description="BigNAS single-stage space (ImageNet).",
    )


_FBNET_ACTS = ("relu", "hswish")
# Stage rows of the FBNetV2-F space: (blocks, first stride, min width, max width, width step).
_FBNETV2_F_ROWS = (
    (1, 1, 12, 16, 4),
    (3, 2, 16, 28, 4),
    (3, 2, 16, 40, 8),
    (3, 2, 48, 96, 8),
    (4, 1, 72, 128, 8),
    (4, 2, 112, 216, 8),
)


def _fbnetv2_f(name: str, attentions: tuple[int, ...], description: str) -> SearchSpace:
    blocks = []
    for index, (n, stride, low, high, step) in enumerate(_FBNETV2_F_ROWS, start=1):
        widths = tuple(range(low, high + 1, step))
        blocks += stage(
            index,
            n,
            stride,
            widths,
            (0.75, 1.5, 2.25, 3.0, 3.75, 4.5, 6.0),
            (3, 5),
            min_depth=1,
            attentions=attentions,
            activations=_FBNET_ACTS,
        )
    return SearchSpace(
        name=name,
        in_channels=3,
        num_classes=1000,
        resolutions=(128, 160, 192, 224),
        stem=StemSpec(out_channels=(16,), stride=2, activation="hswish"),
        blocks=tuple(blocks),
        head=HeadSpec(hidden_channels=(1984,), activation="hswish"),
        kernel_sharing="separate",
        width_rounding="mobile_vision",
        width_divisor=8,
        description=description,
    )


@SPACES.register("fbnetv2_f")
def fbnetv2_f() -> SearchSpace:
    """FBNetV2-F (Wan et al., CVPR 2020): channels, expansion, kernel, activation, SE, depth and
    input resolution, chosen per block.

    The paper's macro table (its Table 1) was not readable in our sources. The stage rows
    (widths as min..max/step, block counts, strides) follow a third-party reimplementation of
    the F space and are consistent with the searched FBNetV2-F1..F4 models of mobile-vision; the
    expansion grid extends the reported 0.75..4.5 step 0.75 with 6, because mobile-vision's
    searched models use expansions up to 6.9 relative to their actual input width. Differences
    from the paper's space: a skipped block is an identity (FBNetV2's ``skip`` may be a 1x1
    projection when widths change), and the head is 1x1 conv + pool + linear instead of
    mobile-vision's ``ir_pool``.

    Size: every block here chooses its own micro-architecture (FP-NAS calls that variant
    "FBNetV2-F-Fine"), giving 5.4e46 archs. FP-NAS quotes ~6e25 for FBNetV2-F, where the
    micro-architecture (expansion, kernel, SE, activation) is shared by a stage: with per-block
    widths, per-stage micro-architecture and these options the count is 5.5e25, consistent
    with that figure.
    """
    return _fbnetv2_f("fbnetv2_f", (0, 1), "FBNetV2-F space (ImageNet, 128-224 px).")


@SPACES.register("fbnetv2_f_pp")
def fbnetv2_f_pp() -> SearchSpace:
    """FBNetV2-F++ of FP-NAS (Yan et al., CVPR 2021): FBNetV2-F with the attention choice
    widened to Split-Attention, splits {0, 1, 2, 4} (0 none, 1 squeeze-excite)."""
    return _fbnetv2_f(
        "fbnetv2_f_pp", (0, 1, 2, 4), "FBNetV2-F++: FBNetV2-F with Split-Attention {0,1,2,4}."
    )


def _fpnas_l(
    name: str, width: float, extra_blocks: int, resolutions: tuple[int, ...]
) -> SearchSpace:
    """FBNetV2-F++ made wider (channel choices scaled by ``width``, rounded to 8) and deeper
    (``extra_blocks`` more per stage after the first), Split-Attention {0, 1, 2, 4}."""
    blocks = []
    for index, (n, stride, low, high, _) in enumerate(_FBNETV2_F_ROWS, start=1):
        low, high = (8 * max(1, round(v * width / 8)) for v in (low, high))
        blocks += stage(
            index,
            n + (extra_blocks if index > 1 else 0),
            stride,
            tuple(range(low, high + 1, 8)),
            (0.75, 1.5, 2.25, 3.0, 3.75, 4.5, 6.0),
            (3, 5),
            min_depth=1,
            attentions=(0, 1, 2, 4),
            activations=_FBNET_ACTS,
        )
    return SearchSpace(
        name=name,
        in_channels=3,
        num_classes=1000,
        resolutions=resolutions,
        stem=StemSpec(out_channels=(16,), stride=2, activation="hswish"),
        blocks=tuple(blocks),
        head=HeadSpec(hidden_channels=(1984,), activation="hswish"),
        kernel_sharing="separate",
        width_rounding="mobile_vision",
        width_divisor=8,
        description=f"FP-NAS {name[-2:].upper()} space: wider, deeper FBNetV2-F++.",
    )


@SPACES.register("fpnas_l0")
def fpnas_l0() -> SearchSpace:
    """FP-NAS's space for FP-NAS-L0 (Yan et al., CVPR 2021; searched at ~0.4G MACs, 224 px).

    The paper widens FBNetV2-F++ (more channel choices), deepens it (more blocks per stage)
    and raises the input resolution; its tables were not readable in our sources, so the
    factors here are ours: widths x1.25, one more block per stage, 224 px.
    """
    return _fpnas_l("fpnas_l0", 1.25, 1, (224,))


@SPACES.register("fpnas_l1")
def fpnas_l1() -> SearchSpace:
    """FP-NAS-L1's space (~0.6G MACs in our recipes; the paper's budget is unverified):
    widths x1.5, one more block per stage, 256 px. Factors are ours (see `fpnas_l0`)."""
    return _fpnas_l("fpnas_l1", 1.5, 1, (256,))


@SPACES.register("fpnas_l2")
def fpnas_l2() -> SearchSpace:
    """FP-NAS-L2's space (~1.0G MACs, as in the paper's abstract): widths x1.5, two more
    blocks per stage, 288 px. Factors are ours (see `fpnas_l0`)."""
    return _fpnas_l("fpnas_l2", 1.5, 2, (288,))
