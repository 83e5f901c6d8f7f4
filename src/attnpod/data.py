"""TinyShakespeare: fetch with a checksum, tokenise by character, split, sample windows.

SPEC section 1: 1,115,394 characters, 65-character vocabulary, first 90 % of the
token stream for training, last 10 % for validation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, ParameterError
from .store import sha256_file

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
ENV_VAR = "ATTNPOD_DATA"
SPLITS = ("train", "val", "all")


def _verify(path: Path, source: str) -> Path:
    if path.is_dir():
        raise DataError(f"{source}: {path} is a directory, not a file. Point {ENV_VAR} (or the `path` argument) "
                        f"at TinyShakespeare's input.txt itself, e.g. {path / 'input.txt'}.")
    if not path.is_file():
        raise DataError(f"{source}: {path} does not exist. Point {ENV_VAR} (or the `path` "
                        f"argument) at a copy of TinyShakespeare's input.txt, or unset it to download.")
    digest = sha256_file(path)
    if digest != SHA256:
        raise DataError(f"{source}: {path} has SHA-256 {digest}, expected {SHA256}. "
                        f"This is not the char-rnn TinyShakespeare input.txt; fetch it from {URL}.")
    return path


def corpus_path(path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """The verified path of ``input.txt``.

    Order: the ``path`` argument, then ``$ATTNPOD_DATA``, then a download from
    the canonical URL into a per-user cache (pooch; written under a temporary
    name and moved into place only after its SHA-256 matches).
    """
    if path:
        return _verify(Path(path).expanduser(), "path argument")
    if os.environ.get(ENV_VAR):
        return _verify(Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}")
    import pooch

    cache = Path(cache_dir) if cache_dir else Path(pooch.os_cache("attnpod")) / "data"
    try:
        fetched = pooch.retrieve(URL, known_hash=f"sha256:{SHA256}", fname="tinyshakespeare.txt",
                                 path=cache, progressbar=False)
    except ValueError as err:  # pooch's checksum mismatch; it has already deleted the download
        raise DataError(f"downloaded corpus failed its checksum ({err}); nothing was kept in {cache}.") from err
    except Exception as err:  # no network, DNS failure, HTTP error
        raise DataError(f"could not download TinyShakespeare from {URL} ({type(err).__name__}: {err}). "
                        f"Without network, set {ENV_VAR}=/path/to/input.txt or pass `path=`.") from err
    return Path(fetched)


def split_tokens(tokens: torch.Tensor, name: str) -> torch.Tensor:
    """The ``name`` split of a token sequence: "train" (the first 90 %), "val" (the rest) or "all"."""
    n_train = int(0.9 * len(tokens))
    if name == "train":
        return tokens[:n_train]
    if name == "val":
        return tokens[n_train:]
    if name == "all":
        return tokens
    raise ParameterError(f"unknown split {name!r}; choose one of {SPLITS}")


@dataclass
class Corpus:
    """The tokenised corpus: ``tokens[t]`` int64, vocabulary ``chars``, split at 90 %."""

    text: str
    chars: list[str]
    tokens: torch.Tensor

    @property
    def vocab_size(self) -> int:
        """The number of distinct characters: the models' vocabulary."""
        return len(self.chars)

    @property
    def n_train(self) -> int:
        """Tokens in the training split: the first 90 % of the text."""
        return int(0.9 * len(self.tokens))

    def split(self, name: str) -> torch.Tensor:
        """The tokens of split ``name``: "train" (the first 90 %), "val" (the rest) or "all"."""
        return split_tokens(self.tokens, name)

    def encode(self, s: str) -> torch.Tensor:
        """The token ids of the text ``s`` (every character must be in the corpus)."""
        lookup = {c: i for i, c in enumerate(self.chars)}
        return torch.tensor([lookup[c] for c in s], dtype=torch.long)

    def decode(self, ids) -> str:
        """The text of the token ``ids``."""
        return "".join(self.chars[int(i)] for i in ids)


def load_corpus(path: str | os.PathLike | None = None) -> Corpus:
    """Read, verify and tokenise TinyShakespeare (see :func:`corpus_path`)."""
    text = corpus_path(path).read_text(encoding="utf-8")
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    tokens = torch.tensor(np.fromiter((lookup[c] for c in text), dtype=np.int64, count=len(text)))
    return Corpus(text, chars, tokens)


def random_batch(tokens: torch.Tensor, batch_size: int, block_size: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random training windows ``x[B, T]`` and their next-token targets ``y[B, T]``."""
    starts = torch.randint(len(tokens) - block_size - 1, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = tokens[starts[:, None] + offsets]
    y = tokens[starts[:, None] + offsets + 1]
    return x, y


def token_windows(windows) -> torch.Tensor:
    """``windows[n, t]`` as int64 token ids; floats, booleans or anything not integer are refused
    (a float id would be cut to an integer silently)."""
    kind = windows.dtype if isinstance(windows, (torch.Tensor, np.ndarray)) else np.asarray(windows).dtype
    integer = (not kind.is_floating_point and not kind.is_complex and kind != torch.bool) if isinstance(
        kind, torch.dtype) else np.dtype(kind).kind in "iu"
    if not integer:
        raise ParameterError(f"token windows must hold integer ids, not {kind}")
    windows = torch.as_tensor(windows, dtype=torch.long)
    if windows.ndim != 2:
        raise ParameterError(f"windows must be (N, T) token ids, got shape {tuple(windows.shape)}")
    return windows


def disjoint_starts(n_tokens: int, n: int, length: int, seed: int, what: str = "windows") -> np.ndarray:
    """Start offsets of ``n`` windows of ``length`` tokens that never overlap: n of the ⌊n_tokens/length⌋
    tiles of the sequence, drawn without repeats (seeded), in drawn order."""
    tiles = n_tokens // length
    if n < 1:
        raise ValueError(f"need at least one window, got n={n}")
    if n > tiles:
        raise ParameterError(f"{n} {what} of {length} tokens do not fit without overlap in {n_tokens} tokens "
                             f"({tiles} tiles)")
    return np.random.default_rng(seed).choice(tiles, n, replace=False) * length


def sample_windows(corpus: Corpus, n: int, length: int, split: str = "val", seed: int = 42) -> torch.Tensor:
    """N windows ``windows[n, t]`` of T consecutive tokens that never overlap (disjoint tiles, seeded).

    Snapshots that share tokens are not independent: at N = 1000 windows of 256
    characters drawn at random offsets, 98.5 % would overlap another. A split too
    short for N disjoint windows is an error; the whole file (``split="all"``, where
    the published script draws from) holds 4,300 windows of 256.
    """
    tokens = corpus.split(split)
    if length > len(tokens):
        raise ValueError(f"window length {length} exceeds the {split!r} split ({len(tokens)} tokens)")
    starts = torch.from_numpy(disjoint_starts(len(tokens), n, length, seed, f"windows of the {split!r} split"))
    return tokens[starts[:, None] + torch.arange(length)]


def disjoint_batches(tokens: torch.Tensor, n: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` non-overlapping windows ``x[n, T]`` and their next-token targets ``y`` (tiles of T + 1 tokens)."""
    starts = torch.from_numpy(disjoint_starts(len(tokens), n, length + 1, seed))
    window = tokens[starts[:, None] + torch.arange(length + 1)]
    return window[:, :-1], window[:, 1:]
