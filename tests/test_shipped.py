"""Shipped checkpoints: float16 safetensors verified against a manifest; the paper profile never trains on a CPU."""

import json
import os
import stat
import types

import pytest
import torch

from attnpod import shipped
from attnpod.config import get_profile
from attnpod.models import GPT
from attnpod.train import CheckpointError, History, model_config, training_settings

# A stand-in for the corpus: the loader asks for the vocabulary and the validation split (check windows).
TOKENS = torch.randint(0, 65, (4000,), generator=torch.Generator().manual_seed(1))
CORPUS = types.SimpleNamespace(vocab_size=65, split=lambda name: TOKENS)
TINY = dict(n_layer=2, n_head=2, n_embd=16, block_size=16, steps=4, warmup=1, batch_size=2)


def tiny_paper(variant="ega1", causal=False, seed=42, **sizes):
    """A paper-named profile (so it trains only on a GPU) with tiny sizes, a model for it, and a record
    whose final validation loss is the model's own (as a real training's is, up to sampling)."""
    profile = get_profile("paper", seed=seed, **(TINY | sizes))
    torch.manual_seed(seed + len(variant) + causal)
    cfg = model_config(profile, variant, 65, causal)
    model = GPT(cfg).eval()
    loss = shipped.check_loss(GPT(cfg).eval().load_state_dict(model.state_dict()) and model, CORPUS)
    history = History(step=[2, 4], train=[loss + 0.1, loss + 0.02], val=[loss + 0.1, loss + 0.01],
                      curve=[4.0, 3.5, 3.2, 2.9], seconds=2.0, tokens=128)
    return profile, model, history, training_settings(profile, cfg)


def shipped_folder(tmp_path, *models):
    """A folder with ``models`` ((variant, causal, seed), ...) shipped into it."""
    folder = tmp_path / "checkpoints" / "paper"
    for variant, causal, seed in models:
        profile, model, history, settings = tiny_paper(variant, causal, seed)
        shipped.ship(model, history, settings, seed, folder, CORPUS)
    return folder


def edit_manifest(folder, change):
    manifest = json.loads((folder / shipped.MANIFEST).read_text())
    change(manifest)
    (folder / shipped.MANIFEST).write_text(json.dumps(manifest))


def test_ship_then_load_gives_the_float16_weights_and_the_record(tmp_path):
    profile, model, history, settings = tiny_paper()
    folder = tmp_path / "checkpoints" / "paper"
    entry = shipped.ship(model, history, settings, 42, folder, CORPUS, device="test-device")
    manifest = json.loads((folder / shipped.MANIFEST).read_text())
    assert [e["file"] for e in manifest["entries"]] == ["ega1-seed42.safetensors"]
    assert set(entry) == set(shipped._ENTRY) | {"code"}
    assert (entry["steps"], entry["val_loss"], entry["tokens_per_s"], entry["device"]) == (
        4, history.val[-1], 64.0, "test-device")
    assert abs(entry["check"]["val_loss"] - history.val[-1]) < 0.05

    loaded, record, again = shipped.shipped_model(profile, "ega1", False, CORPUS, root=tmp_path)
    assert again == entry and record == history
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.half().float()), name
    assert loaded.lm_head.weight.data_ptr() == loaded.tok_emb.weight.data_ptr()  # still tied
    x = torch.randint(0, 65, (2, 16))
    assert (loaded(x)[0] - model(x)[0]).abs().max() < 0.05  # float16 rounding only
    mode = (folder / entry["file"]).stat().st_mode
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH  # readable like the rest of the checkout


def test_a_file_that_differs_from_the_manifest_is_refused_by_name(tmp_path, monkeypatch):
    profile, model, history, settings = tiny_paper()
    folder = tmp_path / "checkpoints" / "paper"
    entry = shipped.ship(model, history, settings, 42, folder, CORPUS)
    path = folder / entry["file"]
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one flipped bit in the weights
    path.write_bytes(bytes(data))
    read = []
    monkeypatch.setattr("safetensors.safe_open", lambda *a, **k: read.append(a))
    with pytest.raises(CheckpointError, match="ega1-seed42.safetensors.*does not match the manifest"):
        shipped.shipped_model(profile, "ega1", False, CORPUS, root=tmp_path)
    assert not read  # refused before reading the weights
    path.unlink()
    with pytest.raises(shipped.MissingCheckpoint, match="missing"):
        shipped.shipped_model(profile, "ega1", False, CORPUS, root=tmp_path)


@pytest.mark.parametrize("name", ["../../../../etc/hostname", "/etc/hostname", "../outside.safetensors",
                                  "sub/../../x.safetensors", "base-seed42.safetensors", "ega1-seed43.safetensors"])
def test_a_manifest_file_field_cannot_leave_its_folder_or_name_another_model(tmp_path, monkeypatch, name):
    """Only the file an entry's variant, gate and seed name is ever opened; nothing of another file is shown."""
    folder = shipped_folder(tmp_path, ("ega1", False, 42))
    (tmp_path / "checkpoints" / "outside.safetensors").write_bytes((folder / "ega1-seed42.safetensors").read_bytes())
    edit_manifest(folder, lambda m: m["entries"][0].update(file=name))
    opened = []
    real = shipped.sha256_file
    monkeypatch.setattr(shipped, "sha256_file", lambda p: opened.append(p) or real(p))
    profile = tiny_paper()[0]
    with pytest.raises(CheckpointError, match="manifest.json.*entry 0 names file") as err:
        shipped.shipped_model(profile, "ega1", False, CORPUS, root=tmp_path)
    assert not opened and "git checkout" not in str(err.value) and "\n" not in str(err.value)


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    folder = shipped_folder(tmp_path, ("base", False, 42))
    outside = tmp_path / "elsewhere.safetensors"
    (folder / "base-seed42.safetensors").rename(outside)
    (folder / "base-seed42.safetensors").symlink_to(outside)
    with pytest.raises(CheckpointError, match="links out of"):
        shipped.shipped_model(tiny_paper("base")[0], "base", False, CORPUS, root=tmp_path)
    with pytest.raises(CheckpointError, match="not a relative path"):
        shipped._inside(folder, "../x")


def _swap(folder, claimed, actual):
    """Make the entry ``claimed`` point at the weights and identity of ``actual`` (both file names)."""
    def change(manifest):
        entries = {e["file"]: e for e in manifest["entries"]}
        entry = entries[claimed]
        (folder / claimed).write_bytes((folder / actual).read_bytes())
        entry["sha256"] = shipped.sha256_file(folder / claimed)
    edit_manifest(folder, change)


@pytest.mark.parametrize("claimed, actual", [("base-seed42.safetensors", "ega1-seed42.safetensors"),
                                             ("ega1-seed42.safetensors", "ega1_causal-seed42.safetensors"),
                                             ("ega1_causal-seed42.safetensors", "ega1-seed42.safetensors"),
                                             ("ega1-seed42.safetensors", "ega1-seed7.safetensors"),
                                             ("conv_l4-seed42.safetensors", "base-seed42.safetensors")])
def test_an_entry_that_lies_about_its_weights_is_refused(tmp_path, claimed, actual):
    models = {("base", False, 42), ("ega1", False, 42), ("ega1", True, 42), ("ega1", False, 7),
              ("conv_l4", False, 42)}
    folder = shipped_folder(tmp_path, *sorted(models))
    _swap(folder, claimed, actual)
    variant, causal = claimed.split("-")[0].removesuffix("_causal"), "_causal" in claimed
    with pytest.raises(CheckpointError, match=claimed):
        shipped.shipped_model(tiny_paper(variant, causal)[0], variant, causal, CORPUS, root=tmp_path)


def test_another_seeds_weights_under_an_entry_updated_to_match_are_refused(tmp_path):
    """Seed 43's weights under seed 44's entry, with the entry's SHA-256 and check loss updated to match:
    the weights file names its own seed and profile settings, so it never counts as seed 44."""
    folder = shipped_folder(tmp_path, ("base", False, 43), ("base", False, 44))
    source, claimed = folder / "base-seed43.safetensors", folder / "base-seed44.safetensors"
    entry43 = next(e for e in shipped.read_manifest(folder)["entries"] if e["seed"] == 43)

    def change(manifest):
        entry = next(e for e in manifest["entries"] if e["seed"] == 44)
        claimed.write_bytes(source.read_bytes())
        entry.update(sha256=shipped.sha256_file(claimed), check=entry43["check"], val_loss=entry43["val_loss"],
                     train_loss=entry43["train_loss"], curve=entry43["curve"])
    edit_manifest(folder, change)
    with pytest.raises(CheckpointError, match="holds the weights of seed 43, not of seed 44"):
        shipped.shipped_model(tiny_paper("base", seed=44)[0], "base", False, CORPUS, root=tmp_path)
    # an entry whose training settings are another seed's is refused when the manifest is read
    edit_manifest(folder, lambda m: m["entries"][1]["settings"]["protocol"].update(seed=43))
    with pytest.raises(CheckpointError, match="not seed 44's"):
        shipped.read_manifest(folder)


def test_weights_trained_with_other_profile_settings_are_refused(tmp_path):
    """The header records the profile's settings: weights trained with another learning rate (same sizes,
    same seed) do not load under an entry that says otherwise."""
    folder = shipped_folder(tmp_path, ("base", False, 42))
    edit_manifest(folder, lambda m: m["entries"][0]["settings"]["protocol"].update(lr=0.5))
    with pytest.raises(CheckpointError, match="other profile settings"):
        shipped.load_shipped(folder, shipped.read_manifest(folder)["entries"][0], CORPUS)


def test_a_forged_header_is_still_caught_by_the_check_loss(tmp_path):
    """Weights of the causal-gate model, written with the plain model's header: the names and shapes fit,
    the loss on the check windows does not."""
    from safetensors.torch import load_file, save_file

    folder = shipped_folder(tmp_path, ("ega1", False, 42), ("ega1", True, 42))
    plain, causal = folder / "ega1-seed42.safetensors", folder / "ega1_causal-seed42.safetensors"
    from safetensors import safe_open

    with safe_open(str(plain), framework="pt") as fh:
        header = fh.metadata()
    save_file(load_file(str(causal)), str(plain), metadata=header)
    edit_manifest(folder, lambda m: m["entries"][0].update(sha256=shipped.sha256_file(plain)))
    with pytest.raises(CheckpointError, match="check windows"):
        shipped.shipped_model(tiny_paper()[0], "ega1", False, CORPUS, root=tmp_path)


def test_weights_of_other_sizes_or_steps_are_refused(tmp_path):
    """A manifest entry of other sizes (say, smoke weights in a paper manifest) never loads as this profile's."""
    folder = tmp_path / "checkpoints" / "paper"
    small, model, history, settings = tiny_paper("base", n_embd=8)
    shipped.ship(model, history, settings, 42, folder, CORPUS)
    profile = tiny_paper("base")[0]  # n_embd 16
    edit_manifest(folder, lambda m: m["entries"][0].update(settings=training_settings(
        profile, model_config(profile, "base", 65))))
    with pytest.raises(CheckpointError, match="config"):
        shipped.shipped_model(profile, "base", False, CORPUS, root=tmp_path)

    def claim_paper(manifest):
        entry = manifest["entries"][0]
        entry["config"] = entry["settings"]["model"]
    edit_manifest(folder, claim_paper)
    with pytest.raises(CheckpointError, match="(header|shape|steps|config)"):
        shipped.shipped_model(profile, "base", False, CORPUS, root=tmp_path)
    steps = tmp_path / "steps" / "checkpoints" / "paper"  # trained 4 steps, its settings claim 30
    shipped.ship(*tiny_paper("base")[1:], 42, steps, CORPUS)
    longer = profile.replace(steps=30)
    edit_manifest(steps, lambda m: m["entries"][0].update(settings=training_settings(
        longer, model_config(longer, "base", 65))))
    with pytest.raises(CheckpointError, match="steps"):
        shipped.shipped_model(longer, "base", False, CORPUS, root=tmp_path / "steps")


@pytest.mark.parametrize("tensor", ["int32", "bool", "nan", "inf", "missing", "extra", "shape"])
def test_stored_tensors_must_fit_the_model_exactly(tmp_path, tensor):
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = shipped_folder(tmp_path, ("base", False, 42))
    path = folder / "base-seed42.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        header, weights = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    name = "blocks.0.attn.qkv.weight"
    if tensor in ("int32", "bool"):
        weights[name] = weights[name].to(getattr(torch, tensor))
    elif tensor in ("nan", "inf"):
        weights[name] = torch.full_like(weights[name], float(tensor))
    elif tensor == "missing":
        del weights[name]
    elif tensor == "extra":
        weights["blocks.0.attn.extra"] = torch.zeros(3, dtype=torch.float16)
    else:
        weights[name] = weights[name][:-1]
    save_file(weights, str(path), metadata=header)
    edit_manifest(folder, lambda m: m["entries"][0].update(sha256=shipped.sha256_file(path)))
    with pytest.raises(CheckpointError, match="base-seed42.safetensors") as err:
        shipped.shipped_model(tiny_paper("base")[0], "base", False, CORPUS, root=tmp_path)
    assert "\n" not in str(err.value)


def test_a_record_that_is_not_the_models_is_refused(tmp_path):
    profile, model, history, settings = tiny_paper("base")
    with pytest.raises(CheckpointError, match="not this model's"):
        shipped.ship(model, History(step=[4], train=[1.0], val=[1.5], curve=[1.0]), settings, 42, tmp_path, CORPUS)
    folder = shipped_folder(tmp_path, ("base", False, 42))

    def lie(manifest):
        entry = manifest["entries"][0]
        entry["val_loss"] = entry["curve"]["val"][-1] = entry["val_loss"] - 1.0
    edit_manifest(folder, lie)
    with pytest.raises(CheckpointError, match="final validation loss"):
        shipped.shipped_model(profile, "base", False, CORPUS, root=tmp_path)
    edit_manifest(folder, lambda m: m["entries"][0]["check"].update(val_loss=1.0))
    with pytest.raises(CheckpointError, match="check windows"):
        shipped.shipped_model(profile, "base", False, CORPUS, root=tmp_path)


@pytest.mark.parametrize("damage", [
    "{not json", "[]", '{"format": 2}', '{"format": 1, "entries": []}', '{"format": 2, "entries": {}}',
    "entry:drop:sha256", "entry:set:seed:'42'", "entry:set:causal_gate:1", "entry:set:curve:[]",
    "entry:set:check:{}", "entry:set:variant:'gpt'", "entry:set:val_loss:NaN", "result:set:kind:'other'",
    "result:drop:settings", "entry:add:extra:1"])
def test_a_damaged_manifest_is_one_line_that_names_it(tmp_path, damage):
    folder = shipped_folder(tmp_path, ("base", False, 42))
    path = folder / shipped.MANIFEST
    if damage.startswith(("entry:", "result:")):
        where, action, key, *value = damage.split(":", 3)
        manifest = json.loads(path.read_text())
        manifest["results"] = [{"file": "results/pruning-base-seed42.npz", "sha256": "0" * 64, "bytes": 1,
                                "kind": "pruning", "model": "base", "seed": 42, "settings": {}, "device": "x",
                                "torch": "x", "date": "x"}]
        entry = manifest["entries" if where == "entry" else "results"][0]
        if action == "drop":
            del entry[key]
        else:
            entry[key] = json.loads(value[0].replace("'", '"')) if value[0] != "NaN" else float("nan")
        path.write_text(json.dumps(manifest))
    else:
        path.write_text(damage)
    with pytest.raises(CheckpointError, match="manifest.json") as err:
        shipped.shipped_model(tiny_paper("base")[0], "base", False, CORPUS, root=tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "garbled", "empty"])
def test_damaged_weights_with_a_matching_hash_are_one_line(tmp_path, damage):
    folder = shipped_folder(tmp_path, ("base", False, 42))
    path = folder / "base-seed42.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbled": data[:8] + os.urandom(64) + data[72:],
                      "empty": b""}[damage])
    edit_manifest(folder, lambda m: m["entries"][0].update(sha256=shipped.sha256_file(path)))
    with pytest.raises(CheckpointError, match="base-seed42.safetensors") as err:
        shipped.shipped_model(tiny_paper("base")[0], "base", False, CORPUS, root=tmp_path)
    assert "\n" not in str(err.value)


def test_paper_profile_on_a_cpu_uses_shipped_models_and_never_trains(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("attnpod.train.train", lambda *a, **k: calls.append(a))
    profile, model, history, settings = tiny_paper("base", seed=43)
    assert shipped.trains_only_on_gpu("paper", "cpu") and not shipped.trains_only_on_gpu("laptop", "cpu")
    assert not shipped.trains_only_on_gpu("paper", "cuda")
    with pytest.raises(shipped.MissingCheckpoint, match="seed 43.*not trained on a CPU.*--device cuda"):
        shipped.trained_or_shipped(profile, "base", CORPUS, "cpu", root=tmp_path)
    shipped.ship(model, history, settings, 43, tmp_path / "checkpoints" / "paper", CORPUS)
    loaded, record, name = shipped.trained_or_shipped(profile, "base", CORPUS, "cpu", root=tmp_path)
    assert record.val == history.val and not calls
    from attnpod.store import settings_key

    assert name == f"base-{settings_key(settings)}"  # the artifact store's name for this checkpoint
    with pytest.raises(shipped.MissingCheckpoint):  # another seed, or other settings, is another model
        shipped.trained_or_shipped(profile.replace(seed=44), "base", CORPUS, "cpu", root=tmp_path)
    with pytest.raises(shipped.MissingCheckpoint):
        shipped.trained_or_shipped(profile.replace(lr=1e-3), "base", CORPUS, "cpu", root=tmp_path)
    assert not calls
    laptop = get_profile("laptop", **TINY)
    with pytest.raises(shipped.MissingCheckpoint) as err:  # a profile a CPU trains says so, not "hours"
        shipped.trained_or_shipped(laptop, "base", CORPUS, "cpu", root=tmp_path, shipped=True)
    assert "hours" not in str(err.value) and "--device cuda" not in str(err.value)


def test_shipping_replaces_an_entry_and_keeps_the_others(tmp_path):
    folder = tmp_path / "ship"
    for variant, causal, seed in (("ega1", True, 42), ("base", False, 42), ("base", False, 43)):
        profile, model, history, settings = tiny_paper(variant, causal, seed)
        shipped.ship(model, history, settings, seed, folder, CORPUS)
    profile, model, history, settings = tiny_paper("base", False, 42)
    history.val[-1] += 0.05
    shipped.ship(model, history, settings, 42, folder, CORPUS)
    entries = shipped.read_manifest(folder)["entries"]
    assert [e["file"] for e in entries] == ["base-seed42.safetensors", "ega1_causal-seed42.safetensors",
                                            "base-seed43.safetensors"]
    assert entries[0]["val_loss"] == history.val[-1]


def test_shipping_into_a_file_is_one_line(tmp_path):
    from attnpod.errors import StoreError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot ship into"):
        shipped.ship(*tiny_paper("base")[1:], 42, blocker, CORPUS)


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
    from attnpod.data import load_corpus

    for entry in manifest["entries"]:
        shipped.load_shipped(tmp_path / "ship", entry, load_corpus(corpus_file()))
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
    model = GPT(cfg)
    loss = shipped.check_loss(model, corpus)
    record = History(step=[4], train=[loss], val=[loss], curve=[3.0], seconds=1.0, tokens=64)
    shipped.ship(model, record, training_settings(profile, cfg), profile.seed, folder, corpus)

    reader = Study(profile, corpus, "cpu", progress=False, shipped_folder=str(folder))
    with pytest.raises(shipped.MissingCheckpoint, match="python -m attnpod experiments --profile paper"):
        reader.pruning("base", n_random=2)
    with monkeypatch.context() as gpu_side:  # as on the GPU: computed, from the shipped weights, then shipped
        gpu_side.setattr(study_module, "trains_only_on_gpu", lambda name, device: False)
        gpu_side.setenv("ATTNPOD_ARTIFACTS", str(tmp_path / "gpu_art"))
        gpu = Study(profile, corpus, "cpu", progress=False, shipped=True, shipped_folder=str(folder))
        computed = gpu.pruning("base", n_random=2)
        entry = shipped.ship_result("pruning", "base", profile.seed, computed.path,
                                    computed.meta, folder, "test-device")
    assert entry["file"] == "results/pruning-base-seed42.npz"
    assert shipped.read_manifest(folder)["results"] == [entry]

    read = reader.pruning("base", n_random=2)
    np.testing.assert_array_equal(read.losses, computed.losses)
    assert read.source == "shipped" and read.path == folder / entry["file"]
    assert not (tmp_path / "art" / "pruning").exists()  # nothing computed on the CPU side
    with pytest.raises(shipped.MissingCheckpoint):
        reader.pruning("base", n_random=3)  # another setting: not what was shipped
    from attnpod.errors import CorruptFile
    from dataclasses import replace

    shipped_file = folder / entry["file"]
    for cut, message in (({"losses": read.losses[..., :3]}, "losses has shape"),
                         ({"losses": read.losses[..., :3], "random_losses": read.random_losses[..., :3],
                           "baseline": read.baseline[:3], "cut_to_one": read.cut_to_one[:, :3],
                           "null_losses": read.null_losses[..., :3]}, "3 evaluation windows")):
        replace(read, **cut).save(tmp_path / "cut.npz")  # the shipped result, cut
        shipped_file.write_bytes((tmp_path / "cut.npz").read_bytes())
        edit_manifest(folder, lambda m: m["results"][0].update(sha256=shipped.sha256_file(shipped_file)))
        with pytest.raises(CorruptFile, match=message):
            reader.pruning("base", n_random=2)
    shipped_file.write_bytes(b"replaced")
    with pytest.raises(CheckpointError, match="does not match the manifest"):
        reader.pruning("base", n_random=2)


def test_each_shipped_entry_records_the_code_it_was_made_with(tmp_path, monkeypatch):
    """A new entry names the commit (or what $ATTNPOD_CODE_REVISION says, on a machine without the history);
    an entry shipped before the field existed still loads; a code that is not text is refused by name."""
    assert shipped.code_revision() != "unknown"  # this checkout is a git checkout
    monkeypatch.setenv("ATTNPOD_CODE_REVISION", "abc123def456")
    folder = shipped_folder(tmp_path, ("base", False, 42))
    assert shipped.read_manifest(folder)["entries"][0]["code"] == "abc123def456"
    edit_manifest(folder, lambda m: m["entries"][0].pop("code"))
    assert "code" not in shipped.read_manifest(folder)["entries"][0]  # an older entry: still read
    edit_manifest(folder, lambda m: m["entries"][0].update(code=7))
    with pytest.raises(CheckpointError, match="code"):
        shipped.read_manifest(folder)


def test_a_missing_real_model_result_says_the_command_for_that_model(tmp_path):
    from attnpod.pretrained import GEMMA3, SMOLLM2

    folder = tmp_path / "laptop"  # no manifest: nothing shipped
    for spec, flag in ((GEMMA3, "--long --model gemma3 --ship"), (SMOLLM2, "--long --ship")):
        with pytest.raises(shipped.MissingCheckpoint, match=flag):
            shipped.shipped_result("laptop", "real_kv_long", spec.key, {"seed": 42}, folder=folder,
                                   option=spec.option)
    with pytest.raises(shipped.MissingCheckpoint, match="real-model --model gemma3 --windows 128"):
        shipped.shipped_result("laptop", "real_model", f"{GEMMA3.key}-causal", {"seed": 42, "n_windows": 128},
                               folder=folder, option=GEMMA3.option)
