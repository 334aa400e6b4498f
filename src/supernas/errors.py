"""User-facing errors.

Every mistake a user can make (a bad space, arch, config, data path or checkpoint) raises a
subclass of `SupernasError` with a one-line message; the CLI prints it and exits with code 2.
Any other exception is a bug: the CLI prints one line and writes the traceback to a file.
"""


class SupernasError(Exception):
    """Base class of errors caused by user input."""


class Interrupted(Exception):
    """A run stopped by SIGINT or SIGTERM after it saved a checkpoint to resume from."""

    def __init__(self, signum: int, phase: str, step: int, checkpoint: str) -> None:
        super().__init__(f"{phase} interrupted at step {step}")
        self.signum, self.phase, self.step, self.checkpoint = signum, phase, step, checkpoint


class SpaceError(SupernasError):
    """A search space definition is invalid, or a space name is unknown."""


class ArchError(SupernasError):
    """An architecture does not belong to its space, or its JSON/string form is malformed."""


class ConfigError(SupernasError):
    """A recipe or override has an unknown key or a value of the wrong type."""


class DataError(SupernasError):
    """A data set cannot be found or read."""


class CheckpointError(SupernasError):
    """A checkpoint is missing, corrupt or from an incompatible run."""


class BudgetError(SupernasError):
    """A cost budget cannot be met by any architecture of the space."""


class DivergenceError(SupernasError):
    """A run's loss or weights became non-finite; its last checkpoint is the last finite one."""


class RankError(SupernasError):
    """Another process of a distributed run hung or died; the run stopped at a collective."""


class ExportError(SupernasError):
    """An export format is unknown or the exported model disagrees with PyTorch."""


def first_line(error: Exception) -> str:
    """The first line of a third-party error's message (at most 200 characters), for a
    one-line `SupernasError` that wraps it."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
