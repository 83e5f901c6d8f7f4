"""Shipped checkpoints: float16 safetensors verified against a manifest; the paper profile never trains on a CPU."""

import json
import types

import pytest
import torch

from attnpod import shipped
from attnpod.config import get_profile
from attnpod.models import GPT
from attnpod.train import CheckpointError, History, model_config, training_settings

CORPUS = types.SimpleNamespace(vocab_size=65)  # all that the loader asks of a corpus
TINY = dict(n_layer=2, n_head=2, n_embd=16, block_size=16, steps=4, warmup=1, batch_size=2)


def tiny_paper(variant="ega1", causal=False, seed=42):
    """A paper-named profile (so it trains only on a GPU) with tiny sizes, and a model for it."""
    profile = get_profile("paper", seed=seed, **TINY)
    cfg = model_config(profile, variant, 65, causal)
    history = History(step=[2, 4], train=[3.1, 2.9], val=[3.2, 3.0], curve=[4.0, 3.5, 3.2, 2.9], seconds=2.0,
                      tokens=128)
    return profile, GPT(cfg).eval(), history, training_settings(profile, cfg)


def test_ship_then_load_gives_the_float16_weights_and_the_record(tmp_path):
    profile, model, history, settings = tiny_paper()
    folder = tmp_path / "checkpoints" / "paper"
    entry = shipped.ship(model, history, settings, 42, folder, device="test-device")
    manifest = json.loads((folder / shipped.MANIFEST).read_text())
    assert [e["file"] for e in manifest["entries"]] == ["ega1-seed42.safetensors"]
    for key in ("file", "sha256", "variant", "causal_gate", "seed", "steps", "train_loss", "val_loss", "curve",
                "config", "device", "torch", "date"):
        assert key in entry
    assert (entry["steps"], entry["val_loss"], entry["tokens_per_s"], entry["device"]) == (4, 3.0, 64.0, "test-device")

    loaded, record, again = shipped.shipped_model(profile, "ega1", False, 65, root=tmp_path)
    assert again == entry and record == history
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.half().float()), name
    assert loaded.lm_head.weight.data_ptr() == loaded.tok_emb.weight.data_ptr()  # still tied
    x = torch.randint(0, 65, (2, 16))
    assert (loaded(x)[0] - model(x)[0]).abs().max() < 0.05  # float16 rounding only


def test_a_file_that_differs_from_the_manifest_is_refused_by_name(tmp_path, monkeypatch):
    profile, model, history, settings = tiny_paper()
    folder = tmp_path / "checkpoints" / "paper"
    entry = shipped.ship(model, history, settings, 42, folder)
    path = folder / entry["file"]
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one flipped bit in the weights
    path.write_bytes(bytes(data))
    read = []
    monkeypatch.setattr("safetensors.torch.load_file", lambda *a, **k: read.append(a))
    with pytest.raises(CheckpointError, match="ega1-seed42.safetensors.*does not match the manifest"):
        shipped.shipped_model(profile, "ega1", False, 65, root=tmp_path)
    assert not read  # refused before reading the weights
    path.unlink()
    with pytest.raises(shipped.MissingCheckpoint, match="missing"):
        shipped.shipped_model(profile, "ega1", False, 65, root=tmp_path)


def test_paper_profile_on_a_cpu_uses_shipped_models_and_never_trains(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("attnpod.train.train", lambda *a, **k: calls.append(a))
    profile, model, history, settings = tiny_paper("base", seed=43)
    assert shipped.trains_only_on_gpu("paper", "cpu") and not shipped.trains_only_on_gpu("laptop", "cpu")
    assert not shipped.trains_only_on_gpu("paper", "cuda")
    with pytest.raises(shipped.MissingCheckpoint, match="seed 43.*not trained on a CPU.*--device cuda"):
        shipped.trained_or_shipped(profile, "base", CORPUS, "cpu", root=tmp_path)
    shipped.ship(model, history, settings, 43, tmp_path / "checkpoints" / "paper")
    loaded, record, name = shipped.trained_or_shipped(profile, "base", CORPUS, "cpu", root=tmp_path)
    assert record.val == [3.2, 3.0] and not calls
    from attnpod.config import settings_key

    assert name == f"base-{settings_key(settings)}"  # the artifact store's name for this checkpoint
    with pytest.raises(shipped.MissingCheckpoint):  # another seed, or other settings, is another model
        shipped.trained_or_shipped(profile.replace(seed=44), "base", CORPUS, "cpu", root=tmp_path)
    with pytest.raises(shipped.MissingCheckpoint):
        shipped.trained_or_shipped(profile.replace(lr=1e-3), "base", CORPUS, "cpu", root=tmp_path)
    assert not calls


def test_shipping_replaces_an_entry_and_keeps_the_others(tmp_path):
    folder = tmp_path / "ship"
    for variant, causal, seed in (("ega1", True, 42), ("base", False, 42), ("base", False, 43)):
        profile, model, history, settings = tiny_paper(variant, causal, seed)
        shipped.ship(model, history, settings, seed, folder)
    profile, model, history, settings = tiny_paper("base", False, 42)
    shipped.ship(model, History(step=[4], train=[1.0], val=[1.5], curve=[1.0]), settings, 42, folder)
    entries = shipped.read_manifest(folder)["entries"]
    assert [e["file"] for e in entries] == ["base-seed42.safetensors", "ega1_causal-seed42.safetensors",
                                            "base-seed43.safetensors"]
    assert entries[0]["val_loss"] == 1.5


@pytest.mark.slow
def test_the_gpu_runbook_trains_concurrently_and_ships(tmp_path):
    """scripts/paper_gpu.sh at the smoke profile on the CPU: the five models at once, shipped and loadable,
    then the experiments on the shipped weights, shipped beside them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import corpus_file

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "ATTNPOD_DATA": str(corpus_file()), "ATTNPOD_ARTIFACTS": str(tmp_path / "art"),
           "PROFILE": "smoke", "DEVICE": "cpu", "SHIP_TO": str(tmp_path / "ship"), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(root / "scripts" / "paper_gpu.sh"), "7"], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "trained base, ega1, ega_morlet, conv_l4, ega1_causal (seed 7) at once" in done.stdout
    assert len(list((tmp_path / "art" / "logs").glob("train-smoke-*-seed7.log"))) == 5
    manifest = shipped.read_manifest(tmp_path / "ship")
    assert [(e["file"], e["seed"], e["steps"]) for e in manifest["entries"]] == [
        (f"{name}-seed7.safetensors", 7, 30) for name in ("base", "conv_l4", "ega1", "ega1_causal", "ega_morlet")]
    for entry in manifest["entries"]:
        shipped.load_shipped(tmp_path / "ship", entry)
    assert sorted(e["file"] for e in manifest["results"]) == sorted(
        [f"results/pruning-{v}-seed7.npz" for v in ("base", "ega1", "ega_morlet", "conv_l4")]
        + [f"results/kv_cache-{v}-seed7.npz" for v in ("base", "ega1_causal")])


@pytest.mark.slow
def test_a_cpu_reads_shipped_experiment_results_and_never_computes_them(tmp_path, monkeypatch):
    """At a GPU-only profile on a CPU, head pruning comes from the shipped result (verified), computed
    from the shipped weights; without one, a one-line error says how to make it on a GPU."""
    import numpy as np

    import attnpod.study as study_module
    from attnpod.data import load_corpus
    from attnpod.study import Study

    from .conftest import corpus_file

    monkeypatch.setenv("ATTNPOD_ARTIFACTS", str(tmp_path / "art"))
    profile = get_profile("paper", n_snapshots=8, **TINY)
    corpus = load_corpus(corpus_file())
    folder = tmp_path / "ship"
    torch.manual_seed(0)
    cfg = model_config(profile, "base", corpus.vocab_size)
    record = History(step=[4], train=[3.0], val=[3.1], curve=[3.0], seconds=1.0, tokens=64)
    shipped.ship(GPT(cfg), record, training_settings(profile, cfg), profile.seed, folder)

    reader = Study(profile, corpus, "cpu", progress=False, shipped_folder=str(folder))
    with pytest.raises(shipped.MissingCheckpoint, match="python -m attnpod experiments --profile paper"):
        reader.pruning("base", n_random=2)
    with monkeypatch.context() as gpu_side:  # as on the GPU: computed, from the shipped weights, then shipped
        gpu_side.setattr(study_module, "trains_only_on_gpu", lambda name, device: False)
        gpu_side.setenv("ATTNPOD_ARTIFACTS", str(tmp_path / "gpu_art"))
        gpu = Study(profile, corpus, "cpu", progress=False, shipped=True, shipped_folder=str(folder))
        computed = gpu.pruning("base", n_random=2)
        entry = shipped.ship_result("pruning", "base", profile.seed, gpu.experiment_files["pruning", "base"],
                                    computed.meta, folder, "test-device")
    assert entry["file"] == "results/pruning-base-seed42.npz"
    assert shipped.read_manifest(folder)["results"] == [entry]

    read = reader.pruning("base", n_random=2)
    np.testing.assert_array_equal(read.losses, computed.losses)
    assert reader.experiment_files["pruning", "base"] == folder / entry["file"]
    assert not (tmp_path / "art" / "pruning").exists()  # nothing computed on the CPU side
    with pytest.raises(shipped.MissingCheckpoint):
        reader.pruning("base", n_random=3)  # another setting: not what was shipped
    (folder / entry["file"]).write_bytes(b"replaced")
    with pytest.raises(CheckpointError, match="does not match the manifest"):
        reader.pruning("base", n_random=2)
