"""Registered search spaces: the papers' spaces and small ones for 28x28 / 32x32 data.

Each preset is a function returning a `SearchSpace`, registered in `SPACES`; its docstring cites
the table it reproduces and how ours differs. Its blocks are a table of `Stage` rows with named
fields, one comment per stage where the row needs one; `stages` numbers them from 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from supernas.errors import SpaceError
from supernas.registry import Registry
from supernas.space.space import BlockSpec, HeadSpec, SearchSpace, StemSpec

SPACES: Registry[Callable[[], SearchSpace]] = Registry("space", SpaceError)


def get_space(name: str) -> SearchSpace:
    """The preset called ``name``, or the space in the YAML file ``name`` (``*.yaml``,
    ``*.yml``); an unknown preset is a `SpaceError` listing the known ones."""
    if name.endswith((".yaml", ".yml")):
        return SearchSpace.from_yaml(name)
    return SPACES.get(name)()


@dataclass(frozen=True)
class Stage:
    """One row of a preset's table: ``blocks`` MBConv blocks, the first with ``stride``; with
    ``min_depth`` the blocks after the first ``min_depth`` may be skipped (depth search)."""

    blocks: int
    stride: int
    out_channels: tuple[int, ...]
    expansions: tuple[float, ...]
    kernel_sizes: tuple[int, ...]
    attentions: tuple[int, ...] = (0,)
    activations: tuple[str, ...] = ("relu",)
    min_depth: int | None = None  # None: every block runs


def stages(rows: Sequence[Stage]) -> tuple[BlockSpec, ...]:
    """The blocks of a table of stages, numbered from 1."""
    blocks = []
    for index, row in enumerate(rows, start=1):
        min_depth = row.blocks if row.min_depth is None else row.min_depth
        blocks += [
            BlockSpec(
                stage=index,
                stride=row.stride if i == 0 else 1,
                out_channels=row.out_channels,
                expansions=row.expansions,
                kernel_sizes=row.kernel_sizes,
                attentions=row.attentions,
                activations=row.activations,
                optional=i >= min_depth,
            )
            for i in range(row.blocks)
        ]
    return tuple(blocks)


@SPACES.register("fmnist_small")
def fmnist_small() -> SearchSpace:
    """A small space for 28x28 grey images (Fashion-MNIST): children of 1.4M to 19M MACs.

    Every choice kind is searchable (width, expansion, kernel, attention, activation, depth,
    resolution), so the demo and the tests exercise the whole language on real data in minutes.
    """
    micro = dict(kernel_sizes=(3, 5), attentions=(0, 1), activations=("relu", "hswish"))
    wide = (3, 4, 6)
    # fmt: off
    rows = [
        Stage(blocks=1, stride=2, out_channels=(16, 24), expansions=(3, 6), **micro),
        Stage(blocks=2, stride=2, out_channels=(32, 40, 48), expansions=wide, min_depth=1, **micro),
        Stage(blocks=3, stride=1, out_channels=(48, 64, 80), expansions=wide, min_depth=1, **micro),
    ]
    # fmt: on
    blocks = stages(rows)
    return SearchSpace(
        name="fmnist_small",
        in_channels=1,
        num_classes=10,
        resolutions=(24, 28),
        stem=StemSpec(out_channels=(16, 24), stride=1),
        blocks=blocks,
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
    every = dict(expansions=(3, 4, 6), kernel_sizes=(3, 5), activations=("swish",), min_depth=1)
    rows = [
        Stage(blocks=2, stride=2, out_channels=(16, 24), attentions=(0,), **every),
        Stage(blocks=3, stride=2, out_channels=(32, 40, 48), attentions=(1,), **every),
        Stage(blocks=3, stride=1, out_channels=(64, 80), attentions=(1,), **every),
    ]
    blocks = stages(rows)
    return SearchSpace(
        name="fmnist_bignas",
        in_channels=1,
        num_classes=10,
        resolutions=(20, 24, 28),
        stem=StemSpec(out_channels=(16, 24), stride=1, activation="swish"),
        blocks=blocks,
        head=HeadSpec(hidden_channels=(128, 256), activation="swish", dropout=0.1),
        shortcut="always",
        tie_stages=True,
        description="BigNAS-style tied-stage space for 28x28x1 images (Fashion-MNIST).",
    )


@SPACES.register("fmnist_bignas_tiny")
def fmnist_bignas_tiny() -> SearchSpace:
    """`fmnist_bignas` at a size one CPU thread trains to convergence in an hour: children of
    0.23M to 3.6M MACs at 16 to 24 px.

    The same layout (tied stages, swish, a shortcut in every block, SE after the first stage,
    elastic stem, head and resolution) with narrower widths and expansions {2, 3, 4}; a
    sandwich step of batch 128 takes about 0.4 s on one thread, against 1.9 s for
    `fmnist_bignas`. `benchmarks/bignas_children.py --reduced` trains it.
    """
    every = dict(expansions=(2, 3, 4), kernel_sizes=(3, 5), activations=("swish",), min_depth=1)
    rows = [
        Stage(blocks=2, stride=2, out_channels=(12, 16), attentions=(0,), **every),
        Stage(blocks=2, stride=2, out_channels=(24, 32), attentions=(1,), **every),
        Stage(blocks=2, stride=1, out_channels=(40, 48), attentions=(1,), **every),
    ]
    return SearchSpace(
        name="fmnist_bignas_tiny",
        in_channels=1,
        num_classes=10,
        resolutions=(16, 20, 24),
        stem=StemSpec(out_channels=(8, 12), stride=1, activation="swish"),
        blocks=stages(rows),
        head=HeadSpec(hidden_channels=(64, 128), activation="swish", dropout=0.1),
        shortcut="always",
        tie_stages=True,
        description="fmnist_bignas narrowed and at 16-24 px, for convergence runs on a CPU.",
    )


@SPACES.register("cifar_small")
def cifar_small() -> SearchSpace:
    """A small space for 32x32 colour images (CIFAR-10/100): children of 2.7M to 33M MACs."""
    acts = ("relu", "hswish")
    every = dict(expansions=(3, 4, 6), kernel_sizes=(3, 5), attentions=(0, 1), activations=acts)
    # fmt: off
    rows = [
        Stage(blocks=1, stride=2, out_channels=(16, 24), expansions=(3, 6), kernel_sizes=(3, 5),
              activations=acts),
        Stage(blocks=3, stride=2, out_channels=(24, 32, 40), min_depth=1, **every),
        Stage(blocks=3, stride=1, out_channels=(48, 64, 80), min_depth=1, **every),
        Stage(blocks=2, stride=2, out_channels=(96, 128), min_depth=1, **every),
    ]
    # fmt: on
    blocks = stages(rows)
    return SearchSpace(
        name="cifar_small",
        in_channels=3,
        num_classes=10,
        resolutions=(28, 32),
        stem=StemSpec(out_channels=(16, 24), stride=1),
        blocks=blocks,
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
    mixed = dict(expansions=(3, 6), kernel_sizes=(3, 5, 7), activations=relu6, min_depth=1)
    # fmt: off
    rows = [
        # the fixed first block: MBConv1 k3
        Stage(blocks=1, stride=1, out_channels=(16,), expansions=(1,), kernel_sizes=(3,),
              activations=relu6),
        Stage(blocks=4, stride=2, out_channels=(32,), **mixed),
        Stage(blocks=4, stride=2, out_channels=(40,), **mixed),
        Stage(blocks=4, stride=2, out_channels=(80,), **mixed),
        Stage(blocks=4, stride=1, out_channels=(96,), **mixed),
        Stage(blocks=4, stride=2, out_channels=(192,), **mixed),
        Stage(blocks=1, stride=1, out_channels=(320,), **mixed),
    ]
    # fmt: on
    blocks = stages(rows)
    return SearchSpace(
        name="proxyless_mobile",
        in_channels=3,
        num_classes=1000,
        resolutions=(224,),
        stem=StemSpec(out_channels=(32,), stride=2, activation="relu6"),
        blocks=blocks,
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
    every = dict(attentions=(1,), activations=("swish",))
    k35 = dict(expansions=(6,), kernel_sizes=(3, 5), **every)
    # fmt: off
    rows = [
        Stage(blocks=2, stride=1, out_channels=(16, 24), expansions=(1,), kernel_sizes=(3,),
              min_depth=1, **every),
        Stage(blocks=3, stride=2, out_channels=(24, 32), expansions=(6,), kernel_sizes=(3,),
              min_depth=2, **every),
        Stage(blocks=3, stride=2, out_channels=(40, 48), min_depth=2, **k35),
        Stage(blocks=4, stride=2, out_channels=(80, 88), min_depth=2, **k35),
        Stage(blocks=6, stride=1, out_channels=(112, 120, 128), min_depth=2, **k35),
        Stage(blocks=6, stride=2, out_channels=(192, 200, 208, 216), min_depth=2, **k35),
        Stage(blocks=2, stride=1, out_channels=(320, 352), min_depth=1, **k35),
    ]
    # fmt: on
    blocks = stages(rows)
    return SearchSpace(
        name="bignas",
        in_channels=3,
        num_classes=1000,
        resolutions=(192, 224, 288, 320),
        stem=StemSpec(out_channels=(32, 40), stride=2, activation="swish"),
        blocks=blocks,
        head=HeadSpec(hidden_channels=(1280, 1408), activation="swish", dropout=0.2),
        shortcut="always",
        tie_stages=True,
        description="BigNAS single-stage space (ImageNet).",
    )


# Stage rows of the FBNetV2-F space: (blocks, first stride, min width, max width, width step).
# The FBNetV2-F stages: widths from ``low`` to ``high`` in steps of ``step``; every block of a
# stage after its first may be skipped.
_FBNETV2_F_ROWS = (
    dict(blocks=1, stride=1, low=12, high=16, step=4),
    dict(blocks=3, stride=2, low=16, high=28, step=4),
    dict(blocks=3, stride=2, low=16, high=40, step=8),
    dict(blocks=3, stride=2, low=48, high=96, step=8),
    dict(blocks=4, stride=1, low=72, high=128, step=8),
    dict(blocks=4, stride=2, low=112, high=216, step=8),
)
_FBNETV2_F_BLOCK = dict(
    expansions=(0.75, 1.5, 2.25, 3.0, 3.75, 4.5, 6.0),
    kernel_sizes=(3, 5),
    activations=("relu", "hswish"),
    min_depth=1,
)


def _fbnetv2_f(name: str, attentions: tuple[int, ...], description: str) -> SearchSpace:
    rows = [
        Stage(
            blocks=row["blocks"],
            stride=row["stride"],
            out_channels=tuple(range(row["low"], row["high"] + 1, row["step"])),
            attentions=attentions,
            **_FBNETV2_F_BLOCK,
        )
        for row in _FBNETV2_F_ROWS
    ]
    blocks = stages(rows)
    return SearchSpace(
        name=name,
        in_channels=3,
        num_classes=1000,
        resolutions=(128, 160, 192, 224),
        stem=StemSpec(out_channels=(16,), stride=2, activation="hswish"),
        blocks=blocks,
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
    rows = []
    for index, row in enumerate(_FBNETV2_F_ROWS):
        low, high = (8 * max(1, round(row[end] * width / 8)) for end in ("low", "high"))
        rows.append(
            Stage(
                blocks=row["blocks"] + (extra_blocks if index > 0 else 0),
                stride=row["stride"],
                out_channels=tuple(range(low, high + 1, 8)),
                attentions=(0, 1, 2, 4),
                **_FBNETV2_F_BLOCK,
            )
        )
    blocks = stages(rows)
    return SearchSpace(
        name=name,
        in_channels=3,
        num_classes=1000,
        resolutions=resolutions,
        stem=StemSpec(out_channels=(16,), stride=2, activation="hswish"),
        blocks=blocks,
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
