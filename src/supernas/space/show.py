"""A plain-text table of a space, for ``supernas space show`` (its cost range is the cost
package's: `supernas.cost.macs.describe_cost_range`)."""

from __future__ import annotations

from supernas.space.choices import count_archs
from supernas.space.space import SearchSpace, attention_name


def _fmt(options) -> str:
    return ",".join(f"{o:g}" if isinstance(o, float) else str(o) for o in options)


def _attention(options) -> str:
    return ",".join(attention_name(a) for a in options)


def describe(space: SearchSpace) -> str:
    """Rows per block, then the space's totals (input, sharing, number of archs)."""
    header = (
        "block",
        "stage",
        "stride",
        "out_channels",
        "expansion",
        "kernel",
        "attention",
        "activation",
        "skippable",
    )
    rows = [
        (
            "stem",
            "-",
            str(space.stem.stride),
            _fmt(space.stem.out_channels),
            "-",
            str(space.stem.kernel_size),
            "-",
            space.stem.activation,
            "no",
        )
    ]
    for index, block in enumerate(space.blocks):
        rows.append(
            (
                str(index),
                str(block.stage),
                str(block.stride),
                _fmt(block.out_channels),
                _fmt(block.expansions),
                _fmt(block.kernel_sizes),
                _attention(block.attentions),
                ",".join(block.activations),
                "yes" if block.optional else "no",
            )
        )
    rows.append(
        (
            "head",
            "-",
            "1",
            _fmt(space.head.hidden_channels),
            "-",
            "1",
            "-",
            space.head.activation,
            "no",
        )
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines += [
        "",
        f"space {space.name} ({space.fingerprint}): {space.description}",
        f"input {space.in_channels}x{{{_fmt(space.resolutions)}}}px, {space.num_classes} classes; "
        f"kernels {space.kernel_sharing}, shortcut {space.shortcut}, "
        f"{'one choice per stage' if space.tie_stages else 'one choice per block'}",
        f"distinct architectures: {count_archs(space):.3e} ({count_archs(space)})",
    ]
    return "\n".join(lines)
