"""The artifact store: caches follow the weights, nothing non-finite is cached, writes survive
crashes and concurrent processes."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from attnpod.analysis import NonFiniteError
from attnpod.pipeline import analyse_model, model_fields
from attnpod.store import artifacts_root, is_verified, write_verified
from attnpod.config import get_profile
from attnpod.models import GPT, GPTConfig, weights_digest

from .conftest import corpus_file

SMALL = dict(n_layer=2, n_head=2, n_embd=16, block_size=16, n_snapshots=6)


def _model(seed):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0))


def test_weights_digest_follows_every_weight():
    a, b = _model(0), _model(0)
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        b.blocks[1].mlp.out.bias[3] += 1e-7
    assert weights_digest(a) != weights_digest(b)


def test_caches_follow_the_weights_not_only_the_name(corpus):
    """Two models under the same checkpoint name (another seed copied in) get their own fields and analyses."""
    profile = get_profile("smoke", **SMALL)
    first, folder1 = analyse_model(_model(0), corpus, profile, "base-samekey", progress=False)
    second, folder2 = analyse_model(_model(1), corpus, profile, "base-samekey", progress=False)
    assert folder1 != folder2
    assert not np.allclose(first.eigenvalues, second.eigenvalues)
    again, folder3 = analyse_model(_model(0), corpus, profile, "base-samekey", progress=False)
    assert folder3 == folder1
    np.testing.assert_array_equal(again.eigenvalues, first.eigenvalues)


def test_nonfinite_fields_are_never_cached_and_a_cached_nan_is_recomputed(corpus):
    profile = get_profile("smoke", **SMALL)
    broken = _model(0)
    with torch.no_grad():
        broken.blocks[0].attn.qkv.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="NaN or inf"):
        model_fields(broken, corpus, profile, "broken", progress=False)
    assert not list(artifacts_root().rglob("fields.npy"))
    assert not list(artifacts_root().rglob("*.tmp"))

    model = _model(0)
    fields = np.array(model_fields(model, corpus, profile, "m", progress=False))
    (path,) = artifacts_root().rglob("fields.npy")
    poisoned = fields.copy()
    poisoned[0, 0, 3, 1] = np.nan
    write_verified(path, lambda tmp: np.save(open(tmp, "wb"), poisoned))  # a NaN cache with a valid sidecar
    with pytest.warns(RuntimeWarning, match="NaN or infinite values"):
        again = model_fields(model, corpus, profile, "m", progress=False)
    np.testing.assert_array_equal(again, fields)


def test_an_analysis_with_nan_is_refused_but_a_degenerate_flag_is_kept(corpus, tmp_path):
    profile = get_profile("smoke", **SMALL)
    result, _ = analyse_model(_model(0), corpus, profile, "m", progress=False)
    result.spectral_concentration[0] = np.nan  # the explicit "degenerate spectrum" flag (SPEC 5.6)
    result.save(tmp_path / "ok.npz")
    result.eigenvalues[0, 0, 0] = np.inf
    with pytest.raises(NonFiniteError):
        result.save(tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


# ----------------------------------------------------------------------------- crash and concurrency, real processes

CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from attnpod.store import write_verified

    path, content, kill_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    calls = []
    real_replace = Path.replace

    def replace(self, target):
        calls.append(target)
        if len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a crash between two steps of the publication
        return real_replace(self, target)

    Path.replace = replace
    write_verified(path, lambda tmp: tmp.write_text(content))
""")


@pytest.mark.parametrize("kill_at, survivor", [(1, "old"), (2, "old"), (3, "new")])
def test_a_kill_while_publishing_leaves_a_valid_pair(tmp_path, kill_at, survivor):
    """SIGKILL at each rename of a write: the next reader sees the old or the new file, verified, never
    a "corrupted" complete file; no temporary file is left behind."""
    path = tmp_path / "checkpoint.pt"
    write_verified(path, lambda tmp: tmp.write_text("old"))
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), "new", str(kill_at)], capture_output=True)
    assert done.returncode == -9, done.stderr
    assert is_verified(path) is True
    assert path.read_text() == survivor
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "checkpoint.pt.lock", "checkpoint.pt.sha256"]


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from attnpod.store import write_verified

    for k in range(40):
        write_verified(Path(sys.argv[1]), lambda tmp: tmp.write_bytes(bytes([k % 251]) * (1 << 16)))
""")
READER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from attnpod.store import is_verified

    states = [is_verified(Path(sys.argv[1])) for _ in range(200)]
    print(states.count(False))
""")


def test_concurrent_writers_and_a_reader_never_collide(tmp_path):
    path = tmp_path / "fields.npy"
    write_verified(path, lambda tmp: tmp.write_bytes(b"x"))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stderr=subprocess.PIPE) for _ in range(2)]
    reader = subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True, text=True)
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.strip() == "0"  # no mismatched pair was ever seen
    assert is_verified(path) is True
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.pending"))


@pytest.mark.slow
def test_two_concurrent_analyses_of_one_model_both_succeed(tmp_path):
    env = {**os.environ, "ATTNPOD_ARTIFACTS": str(tmp_path / "art"), "ATTNPOD_DATA": str(corpus_file())}
    cmd = [sys.executable, "-m", "attnpod", "analyse", "--profile", "smoke", "--model", "base", "--snapshots", "8"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate() for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    assert outputs[0][0].splitlines()[-6:] == outputs[1][0].splitlines()[-6:]
    assert len(list((tmp_path / "art").rglob("analysis.npz"))) == 1
    assert not list((tmp_path / "art").rglob("*.tmp"))


def test_disjoint_readouts_read_each_ensemble_as_the_readout_does_and_are_cached(corpus, monkeypatch):
    from attnpod import pipeline
    from attnpod.analysis import layer_readout
    from attnpod.data import sample_windows
    from attnpod.fields import collect_fields

    profile = get_profile("smoke", **SMALL)
    model = _model(0)
    got = pipeline.disjoint_readouts(model, corpus, profile, "m", progress=False, most=3)
    assert set(got) == {"top_scale", "h_star", "t_spec", "sink"} and got["h_star"].shape == (3, 2)
    windows = sample_windows(corpus, 3 * profile.n_snapshots, profile.block_size, "val", profile.seed + 1)
    second = windows[profile.n_snapshots:2 * profile.n_snapshots]  # the second ensemble, read directly
    direct = layer_readout(collect_fields(model, second, progress=False))
    np.testing.assert_allclose(got["h_star"][1], direct.h_star)
    np.testing.assert_allclose(got["t_spec"][1], direct.t_spec, rtol=1e-6)
    monkeypatch.setattr(pipeline, "layer_readout", lambda *a, **k: pytest.fail("recomputed a cached readout"))
    again = pipeline.disjoint_readouts(model, corpus, profile, "m", progress=False, most=3)
    np.testing.assert_array_equal(again["h_star"], got["h_star"])
    tiles = len(corpus.split("val")) // profile.block_size
    too_big = get_profile("smoke", **{**SMALL, "n_snapshots": tiles // 2 + 1})
    assert pipeline.disjoint_readouts(model, corpus, too_big, "m", progress=False) is None  # one ensemble only
