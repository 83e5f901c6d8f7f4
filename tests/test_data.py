import pytest
import torch

from attnpod import data
from attnpod.data import DataError, random_batch, sample_windows

from .conftest import corpus_file


def test_corpus_sizes_and_split(corpus):
    assert len(corpus.text) == 1_115_394
    assert corpus.vocab_size == 65
    assert len(corpus.split("train")) == 1_003_854
    assert len(corpus.split("val")) == 111_540
    assert corpus.decode(corpus.encode("To be, or not")) == "To be, or not"
    assert corpus.chars == sorted(corpus.chars)


def test_env_var_and_parameter_agree(monkeypatch):
    path = corpus_file()
    monkeypatch.setenv(data.ENV_VAR, str(path))
    assert data.corpus_path() == path
    monkeypatch.delenv(data.ENV_VAR)
    assert data.corpus_path(path) == path


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.corpus_path(tmp_path / "nope.txt")


def test_checksum_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "input.txt"
    bad.write_text("not shakespeare")
    monkeypatch.setenv(data.ENV_VAR, str(bad))
    with pytest.raises(DataError, match="SHA-256"):
        data.corpus_path()


def test_no_network_says_how_to_provide_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "URL", "http://127.0.0.1:9/input.txt")  # nothing listens on the discard port
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=data.ENV_VAR):
        data.corpus_path(cache_dir=cache)
    assert not any(cache.rglob("*")) if cache.exists() else True  # nothing half-written


def test_download_with_bad_checksum_keeps_nothing(tmp_path, monkeypatch):
    """A served file with the wrong content is rejected and not left in the cache."""
    import http.server
    import threading

    served = tmp_path / "srv"
    served.mkdir()
    (served / "input.txt").write_text("wrong content")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv(data.ENV_VAR, raising=False)
        monkeypatch.setattr(data, "URL", f"http://127.0.0.1:{server.server_port}/input.txt")
        cache = tmp_path / "cache"
        with pytest.raises(DataError, match="checksum"):
            data.corpus_path(cache_dir=cache)
        assert not list(cache.glob("*")) if cache.exists() else True
    finally:
        server.shutdown()


def test_random_batch_targets_are_shifted(corpus):
    gen = torch.Generator().manual_seed(1)
    x, y = random_batch(corpus.split("train"), 4, 32, gen)
    assert x.shape == y.shape == (4, 32)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_sample_windows_reproducible_and_in_split(corpus):
    a = sample_windows(corpus, 20, 64, "val", seed=3)
    b = sample_windows(corpus, 20, 64, "val", seed=3)
    c = sample_windows(corpus, 20, 64, "val", seed=4)
    assert a.shape == (20, 64) and torch.equal(a, b) and not torch.equal(a, c)
    val = corpus.split("val")
    text = corpus.decode(val)
    for w in a[:5]:
        assert corpus.decode(w) in text
    with pytest.raises(ValueError, match="split"):
        sample_windows(corpus, 2, 8, "test")


def test_a_directory_is_reported_as_a_directory(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        data.corpus_path(tmp_path)


def test_windows_never_overlap_and_a_split_too_short_says_so(corpus):
    from attnpod.errors import ParameterError
    from attnpod.data import disjoint_batches, disjoint_starts

    starts = disjoint_starts(1000, 9, 100, seed=1)
    assert len(set(starts)) == 9 and all(s % 100 == 0 and s + 100 <= 1000 for s in starts)
    with pytest.raises(ParameterError, match="do not fit without overlap"):
        disjoint_starts(1000, 11, 100, seed=1)
    x, y = disjoint_batches(corpus.split("val"), 40, 64, seed=2)
    assert torch.equal(x[:, 1:], y[:, :-1])
    val = corpus.split("val")
    text = corpus.decode(val)
    spans = sorted(text.index(corpus.decode(torch.cat([w, t[-1:]]))) for w, t in zip(x[:10], y[:10]))
    assert all(b - a >= 65 for a, b in zip(spans, spans[1:]))  # x and its target: 65 tokens, no sharing
    n_val = len(val) // 256
    with pytest.raises(ParameterError, match="do not fit"):
        sample_windows(corpus, n_val + 1, 256, "val", seed=3)  # the paper's N = 1000 does not fit
    assert sample_windows(corpus, n_val + 1, 256, "all", seed=3).shape == (n_val + 1, 256)
