"""FP-NAS's architecture distribution: factorised per variable, then joint per block.

The decisions of a space (`supernas.space.choices.decisions`) are grouped by the unit they
belong to: one group per searchable block (``block3.out_channels``, ``block3.expansion``, ...,
``block3.present``) or per stage in a tied space, and one singleton group for each global
decision (resolution, stem width, head width).

- **Factorised** (coarse): one categorical per decision, ``p(a) = prod_d softmax(pi_d)[a_d]``.
- **Joint** (fine): one categorical per group over the Cartesian product of its decisions,
  able to express correlations inside a block (e.g. "wide only with kernel 3").

`to_joint` converts at the switch with ``pi_g(c_1..c_V) = sum_v log softmax(pi_v)[c_v]``, so
``softmax(pi_g)`` is exactly the product of the factors: the distribution, its entropy and hence
the adaptive number of samples do not jump. A sample is a tuple of option indices, one per
decision (in `decisions` order), in either phase.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import Tensor

from supernas.errors import CheckpointError
from supernas.space.arch import Arch
from supernas.space.choices import Decision, arch_from_choices, decisions
from supernas.space.space import SearchSpace
from supernas.strategies.base import entropy

Sample = tuple[int, ...]  # one option index per decision


def decision_groups(space: SearchSpace, names: list[str]) -> list[tuple[int, ...]]:
    """Indices of ``names`` grouped by their unit (``blockN``/``stageN``, else alone)."""
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        unit = name.split(".")[0]
        key = unit if unit.startswith(("block", "stage")) else name
        groups.setdefault(key, []).append(index)
    return [tuple(g) for g in groups.values()]


class ArchDistribution:
    """Categorical distribution over the archs of a space, factorised or joint per group.

    The logits are leaf tensors with ``requires_grad``; `parameters` returns those of the
    current phase (a new list after `to_joint`, so the caller makes a new optimiser).
    """

    def __init__(self, space: SearchSpace, device: torch.device | None = None) -> None:
        self.space = space
        self.decisions: list[Decision] = decisions(space)
        self.sizes = [len(d.options) for d in self.decisions]
        self.groups = decision_groups(space, [d.name for d in self.decisions])
        self.factor_logits = [torch.zeros(n, device=device, requires_grad=True) for n in self.sizes]
        self.joint_logits: list[Tensor] | None = None

    @property
    def joint(self) -> bool:
        return self.joint_logits is not None

    def parameters(self) -> list[Tensor]:
        return self.joint_logits if self.joint else self.factor_logits

    def _group_logits(self) -> list[Tensor]:
        """Log-probabilities of each group over its product (the current phase's view)."""
        if self.joint:
            return [torch.log_softmax(t, 0) for t in self.joint_logits]
        return [self._product_log_probs(g) for g in self.groups]

    def _product_log_probs(self, group: tuple[int, ...]) -> Tensor:
        """Flattened outer sum of the group's factor log-probabilities (C order)."""
        total = torch.zeros((), device=self.factor_logits[0].device)
        for index in group:
            total = total.unsqueeze(-1) + torch.log_softmax(self.factor_logits[index], 0)
        return total.reshape(-1)

    def to_joint(self) -> None:
        """Switches to the joint phase with the same distribution (no-op if already joint)."""
        if self.joint:
            return
        with torch.no_grad():
            self.joint_logits = [
                self._product_log_probs(g).clone().requires_grad_(True) for g in self.groups
            ]

    def _flat_index(self, group: tuple[int, ...], sample: Sample) -> int:
        flat = 0
        for index in group:
            flat = flat * self.sizes[index] + sample[index]
        return flat

    def _unflatten(self, group: tuple[int, ...], flat: int) -> dict[int, int]:
        result = {}
        for index in reversed(group):
            flat, result[index] = divmod(flat, self.sizes[index])
        return result

    def log_prob(self, samples: list[Sample], factorised: bool = False) -> Tensor:
        """``log p(a_k)`` of each sample, differentiable in the current phase's logits.

        ``factorised=True`` uses the factor logits whatever the phase (in the joint phase they
        live on as the factorised-only reference, see `supernas.strategies.fpnas.search`).
        """
        rows = []
        if self.joint and not factorised:
            logs = [torch.log_softmax(t, 0) for t in self.joint_logits]
            for sample in samples:
                terms = [
                    lp[self._flat_index(g, sample)] for g, lp in zip(self.groups, logs, strict=True)
                ]
                rows.append(torch.stack(terms).sum())
        else:
            logs = [torch.log_softmax(t, 0) for t in self.factor_logits]
            for sample in samples:
                rows.append(torch.stack([lp[i] for lp, i in zip(logs, sample, strict=True)]).sum())
        return torch.stack(rows)

    @torch.no_grad()
    def sample(self, count: int, rng: random.Random) -> list[Sample]:
        """``count`` independent samples, drawn with ``rng`` (the same on every rank)."""
        columns: dict[int, list[int]] = {}
        if self.joint:
            for group, logits in zip(self.groups, self.joint_logits, strict=True):
                flats = _draw(logits, count, rng)
                for position, flat in enumerate(flats):
                    for index, option in self._unflatten(group, flat).items():
                        columns.setdefault(index, [0] * count)[position] = option
        else:
            for index, logits in enumerate(self.factor_logits):
                columns[index] = _draw(logits, count, rng)
        return [tuple(columns[i][k] for i in range(len(self.sizes))) for k in range(count)]

    @torch.no_grad()
    def entropy(self, factorised: bool = False) -> float:
        """Entropy in nats: a sum over factors, or over groups in the joint phase."""
        logits = self.joint_logits if self.joint and not factorised else self.factor_logits
        return sum(entropy(t) for t in logits)

    @torch.no_grad()
    def mode(self) -> Sample:
        """The most probable sample (argmax of each factor, or of each group's joint)."""
        if not self.joint:
            return tuple(int(t.argmax()) for t in self.factor_logits)
        chosen: dict[int, int] = {}
        for group, t in zip(self.groups, self.joint_logits, strict=True):
            chosen.update(self._unflatten(group, int(t.argmax())))
        return tuple(chosen[i] for i in range(len(self.sizes)))

    @torch.no_grad()
    def group_probs(self) -> list[Tensor]:
        """Each group's distribution over its product (for tests and reports)."""
        return [lp.exp() for lp in self._group_logits()]

    def arch(self, sample: Sample) -> Arch:
        choices = {d.name: d.options[i] for d, i in zip(self.decisions, sample, strict=True)}
        return arch_from_choices(self.space, choices)

    def state_dict(self) -> dict[str, Any]:
        return {
            "factor_logits": [t.detach().clone() for t in self.factor_logits],
            "joint_logits": None
            if self.joint_logits is None
            else [t.detach().clone() for t in self.joint_logits],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        factors = state["factor_logits"]
        if [len(t) for t in factors] != self.sizes:
            raise CheckpointError("FP-NAS checkpoint is for a space with other decisions")
        with torch.no_grad():
            for mine, saved in zip(self.factor_logits, factors, strict=True):
                mine.copy_(saved)
        joint = state["joint_logits"]
        self.joint_logits = (
            None
            if joint is None
            else [
                t.detach().clone().to(self.factor_logits[0].device).requires_grad_(True)
                for t in joint
            ]
        )


def _draw(logits: Tensor, count: int, rng: random.Random) -> list[int]:
    weights = torch.softmax(logits.double(), 0).tolist()
    return rng.choices(range(len(weights)), weights=weights, k=count)
