"""Every known failure of attnpod, in one place: each says what went wrong and what to do.

The CLI prints an :class:`AttnpodError` as one line (exit 1; a :class:`ParameterError`, exit 2).
"""

from __future__ import annotations


class AttnpodError(Exception):
    """A known failure with a message that says what to do (the CLI prints it as one line)."""


class ParameterError(AttnpodError, ValueError):
    """A profile setting or notebook parameter has the wrong type or lies out of range."""


# ----------------------------------------------------------------------------- the store and its files

class StoreError(AttnpodError):
    """The artifact store cannot be used as asked: not a folder, not writable, not a store, too small."""


class CorruptFile(AttnpodError):
    """A file that should hold an attnpod result cannot be read as one (a cache recomputes it)."""


# ----------------------------------------------------------------------------- the stages

class DataError(AttnpodError, RuntimeError):
    """The corpus could not be found, fetched or verified."""


class CheckpointError(AttnpodError, RuntimeError):
    """A checkpoint is missing, corrupted or does not match what was asked for."""


class TrainingDiverged(AttnpodError, RuntimeError):
    """The loss became NaN or infinite; nothing from that point on is saved."""


class FieldInputError(AttnpodError, ValueError):
    """Fields handed to the analysis are not an ensemble of causal attention fields."""


class AttentionInputError(FieldInputError):
    """Attention handed to an adapter is not what the analysis needs."""


class NonFiniteError(AttnpodError, FloatingPointError):
    """Fields or an analysis came out NaN or infinite: never cached."""


class MissingModel(AttnpodError):
    """The pretrained model's package is not installed, or lacks its file."""


class MissingCheckpoint(AttnpodError):
    """A model the book needs was neither shipped nor may it be trained here."""
