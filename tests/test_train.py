from pathlib import Path

import numpy as np
import pytest
import torch

from attnpod.config import PROFILES, get_profile
from attnpod.errors import AttnpodError, ParameterError
from attnpod.store import artifact_dir, settings_key, write_verified
from attnpod.train import (CheckpointError, TrainingDiverged, checkpoint_path, load_model, lr_at, model_config,
                           resolve_device, train)

TINY = dict(n_layer=2, n_head=2, n_embd=16, block_size=16, steps=6, warmup=2, batch_size=4,
            eval_interval=3, eval_batches=1, n_snapshots=4)


def tiny():
    return get_profile("smoke", **TINY)


def test_profiles_validate():
    assert PROFILES["paper"].steps == 5000 and PROFILES["paper"].n_snapshots == 1000
    for bad in [dict(n_embd=-4), dict(n_snapshots=2), dict(warmup=10, steps=5), dict(dropout=1.5)]:
        with pytest.raises(ValueError):
            get_profile("smoke", **bad)
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("huge")
    with pytest.raises(ValueError, match="unknown profile setting"):
        get_profile("smoke", n_layers=3)


def test_schedule_warmup_then_cosine():
    p = get_profile("paper")
    assert lr_at(0, p) == 0 and lr_at(150, p) == pytest.approx(1.5e-4)
    assert lr_at(300, p) == pytest.approx(3e-4)
    assert lr_at(2650, p) == pytest.approx(1.5e-4)
    assert lr_at(5000, p) == pytest.approx(0, abs=1e-12)


def test_artifact_keys_change_with_settings():
    a = artifact_dir("fields", "m", {"lr": 1e-3})
    assert a == artifact_dir("fields", "m", {"lr": 1e-3})
    assert a != artifact_dir("fields", "m", {"lr": 2e-3})
    assert settings_key({"a": 1, "b": 2}) == settings_key({"b": 2, "a": 1})


def test_train_resume_equals_uninterrupted(corpus):
    """Stop after 3 steps, resume to 6: same weights and curve as 6 steps in one go."""
    full_model, full_hist, path = train(tiny(), "ega1", corpus, device="cpu", progress=False)
    path.unlink()
    half = tiny()
    import attnpod.train as tr  # interrupt the run right after its first checkpoint

    original = tr.save_checkpoint
    calls = []

    def stop_after_first(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        raise KeyboardInterrupt

    tr.save_checkpoint = stop_after_first
    try:
        with pytest.raises(KeyboardInterrupt):
            train(half, "ega1", corpus, device="cpu", progress=False)
    finally:
        tr.save_checkpoint = original
    assert load_model(path)[1]["step"] == 3
    resumed, hist, _ = train(half, "ega1", corpus, device="cpu", progress=False)
    assert hist.step == full_hist.step == [3, 6]
    np.testing.assert_allclose(hist.curve, full_hist.curve, rtol=1e-5)
    for a, b in zip(resumed.state_dict().values(), full_model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_training_keeps_its_random_streams_to_itself(corpus):
    """The caller's global RNG is the same after training (trained or reused), and initial_model is the
    model a run starts from: CONV-L4's lag logits, which never train, equal it."""
    from attnpod.train import initial_model

    torch.manual_seed(123)
    before = torch.get_rng_state()
    model, _, _ = train(tiny(), "conv_l4", corpus, device="cpu", progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    train(tiny(), "conv_l4", corpus, device="cpu", progress=False)  # reused from its checkpoint
    assert torch.equal(torch.get_rng_state(), before)
    init = initial_model(model_config(tiny(), "conv_l4", corpus.vocab_size), tiny().seed)
    assert torch.equal(torch.get_rng_state(), before)
    for trained, start in zip(model.blocks, init.blocks):
        assert torch.equal(trained.attn.lag_logits, start.attn.lag_logits)
    assert not torch.equal(model.blocks[0].attn.qkv.weight, init.blocks[0].attn.qkv.weight)


def test_rerun_reuses_checkpoint_and_changed_setting_retrains(corpus):
    _, h1, p1 = train(tiny(), "base", corpus, device="cpu", progress=False)
    mtime = p1.stat().st_mtime_ns
    _, h2, p2 = train(tiny(), "base", corpus, device="cpu", progress=False)
    assert p1 == p2 and p2.stat().st_mtime_ns == mtime and h1.val == h2.val
    other = get_profile("smoke", **{**TINY, "lr": 5e-4})
    assert checkpoint_path(other, model_config(other, "base")) != p1


def test_strict_loading_errors(corpus, tmp_path):
    _, _, path = train(tiny(), "base", corpus, device="cpu", progress=False)
    with pytest.raises(CheckpointError, match="config differs"):
        load_model(path, expected=model_config(tiny(), "ega1"))
    state = torch.load(path, weights_only=True)
    state["model"].pop("ln_f.weight")
    bad = tmp_path / "bad.pt"
    write_verified(bad, lambda tmp: torch.save(state, tmp))
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_model(bad)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_model(path)
    with pytest.raises(CheckpointError, match="corrupted"):
        train(tiny(), "base", corpus, device="cpu", progress=False)  # never falls back to random weights
    truncated = tmp_path / "t.pt"
    write_verified(truncated, lambda tmp: tmp.write_bytes(b"PK\x03\x04 not a checkpoint"))
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_model(truncated)


def test_cli_help_and_bad_arguments(capsys):
    from attnpod.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--profile", "smoke", "--model", "nope"])


class _Payload:
    """Unpickling this runs code: it creates the file named in ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_planted_pickle_is_refused_without_running(corpus, tmp_path):
    """A pickle payload where a checkpoint belongs, even with a matching sidecar, never runs."""
    path = checkpoint_path(tiny(), model_config(tiny(), "base"))
    marker = tmp_path / "code-ran"
    write_verified(path, lambda tmp: torch.save({"format": 2, "model": _Payload(marker)}, tmp))
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_model(path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        train(tiny(), "base", corpus, device="cpu", progress=False)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: the unsafe loader runs it
    assert marker.exists()


def test_missing_sidecar_is_not_a_pass(corpus):
    _, _, path = train(tiny(), "base", corpus, device="cpu", progress=False)
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(CheckpointError, match="cannot be verified"):
        load_model(path)


def test_stored_training_settings_are_checked(corpus):
    """A checkpoint copied under another profile's key is refused: the stored settings must match."""
    _, _, path = train(tiny(), "base", corpus, device="cpu", progress=False)
    other = get_profile("smoke", **{**TINY, "lr": 5e-4})
    load_model(path, model_config(tiny(), "base"), profile=tiny())
    with pytest.raises(CheckpointError, match="other settings.*lr"):
        load_model(path, model_config(other, "base"), profile=other)
    target = checkpoint_path(other, model_config(other, "base"))
    write_verified(target, lambda tmp: tmp.write_bytes(path.read_bytes()))
    with pytest.raises(CheckpointError, match="other settings"):
        train(other, "base", corpus, device="cpu", progress=False)


def test_divergence_stops_at_the_first_nonfinite_loss_and_saves_nothing(corpus):
    profile = get_profile("smoke", **{**TINY, "lr": 1e30, "warmup": 0, "eval_interval": 6})
    with pytest.raises(TrainingDiverged, match=r"at step \d+") as err:
        train(profile, "base", corpus, device="cpu", progress=False)
    assert "lr=1e+30" in str(err.value)
    path = checkpoint_path(profile, model_config(profile, "base"))
    assert not path.exists()


@pytest.mark.parametrize("bad", [dict(seed=-1), dict(seed="x"), dict(seed=1.5), dict(n_layer=True),
                                 dict(lr=float("inf")), dict(lr=float("nan")), dict(dropout="0.1"),
                                 dict(n_snapshots=0), dict(warmup=1.5)])
def test_bad_profile_values_stop_before_any_work(bad):
    with pytest.raises(ParameterError, match=next(iter(bad))):
        get_profile("smoke", **bad)


@pytest.mark.parametrize("overrides", [["n_snapshots", 4], "n_snapshots=4", {1: 2}])
def test_bad_overrides_are_a_parameter_error(overrides):
    from attnpod.study import Study

    with pytest.raises(ParameterError, match="overrides must be a dict"):
        Study.create("smoke", overrides=overrides)


def test_devices_are_checked_up_front(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError, match="CUDA is not available.*--device cpu"):
        resolve_device("cuda")
    with pytest.raises(ParameterError, match="unknown device 'tpu'|not supported"):
        resolve_device("tpu")
    with pytest.raises(ParameterError, match="unknown device"):
        resolve_device("gpu0")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.slow
def test_models_train_side_by_side_in_processes(tmp_path, monkeypatch):
    """Two smoke models trained at once, each in its own process, then reused by a study without training."""
    from attnpod.data import load_corpus
    from attnpod.study import Study
    from attnpod.train import is_trained, train_in_processes

    from .conftest import corpus_file

    monkeypatch.setenv("ATTNPOD_ARTIFACTS", str(tmp_path / "art"))
    profile = get_profile("smoke", seed=3, lr=2e-3)  # any profile travels, overrides included
    seconds = train_in_processes(profile, ["base", "ega1_causal"], str(corpus_file()), "cpu", progress=False)
    assert set(seconds) == {"base", "ega1_causal"}
    assert is_trained(profile, "base") and is_trained(profile, "ega1", causal_gate=True)
    assert not is_trained(profile, "ega1")
    assert len(list((tmp_path / "art" / "logs").glob("train-smoke-*-seed3.log"))) == 2
    study = Study(profile, load_corpus(corpus_file()), "cpu", progress=False)
    runs = study.train_all(["base", "ega1_causal"])  # reuses the two checkpoints, trains nothing
    assert runs["base"].history.step[-1] == profile.steps
    same, _, _ = train(profile, "base", study.corpus, "cpu", progress=False)  # reloads the stored model
    for a, b in zip(same.parameters(), runs["base"].model.parameters()):
        assert torch.equal(a, b)
    # both diverge; whichever process ends first is the one reported
    with pytest.raises(AttnpodError, match=r"training (base|ega1) failed: .*lr.*\(log: .*train-smoke-\1-seed3.log\)"):
        train_in_processes(profile.replace(lr=1e9, steps=40), ["base", "ega1"], str(corpus_file()), "cpu",
                           progress=False)


@pytest.mark.parametrize("models, cores, cuda, expected", [
    (4, 2, False, 2),  # one per core, in rounds
    (5, 2, False, 2),
    (1, 2, False, 1),
    (2, 16, False, 2),
    (5, 2, True, 5),  # a small model leaves a GPU mostly idle
])
def test_training_jobs_one_per_core_or_all_on_a_gpu(models, cores, cuda, expected):
    from attnpod.train import training_jobs

    assert training_jobs(models, cores, cuda) == expected
