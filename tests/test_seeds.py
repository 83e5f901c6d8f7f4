"""Training seeds: the book's extra seeds come from shipped weights (or retrained ones), never silently fewer."""

import shutil
from pathlib import Path

import pytest
import torch

from attnpod import shipped
from attnpod.book import seed_losses, with_spread
from attnpod.config import get_profile
from attnpod.study import BOOK_SEEDS, Study
from attnpod.train import model_config, training_settings

ROOT = Path(__file__).resolve().parents[1]
SMOKE_SHIPPED = ROOT / "checkpoints" / "smoke"


@pytest.fixture
def smoke_folder(tmp_path):
    folder = tmp_path / "checkpoints" / "smoke"
    shutil.copytree(SMOKE_SHIPPED, folder, ignore=shutil.ignore_patterns("*.lock"))
    return folder


def smoke_study(corpus, folder, **kw):
    return Study(get_profile("smoke"), corpus, "cpu", progress=False, shipped_folder=str(folder), **kw)


def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an extra seed was trained instead of read")

    import attnpod.train

    monkeypatch.setattr(attnpod.train, "train", refuse)


@pytest.mark.parametrize("profile", ["smoke", "laptop"])
def test_the_shipped_seeds_are_the_books_and_load(corpus, profile):
    """Every seed the book reads is shipped, verified (SHA-256, tensors, check loss) and at its profile's
    settings; the laptop profile ships every seed's experiment results too (chapters 09 and 10)."""
    folder = SMOKE_SHIPPED.parent / profile
    manifest = shipped.read_manifest(folder)
    held = {(e["seed"], e["variant"], e["causal_gate"]) for e in manifest["entries"]}
    models = {("base", False), ("ega1", False), ("ega_morlet", False), ("conv_l4", False), ("ega1", True)}
    assert held == {(s, v, c) for s in BOOK_SEEDS[profile] for v, c in models}
    for entry in manifest["entries"]:
        settings = training_settings(get_profile(profile, seed=entry["seed"]),
                                     model_config(get_profile(profile), entry["variant"], 65, entry["causal_gate"]))
        assert entry["settings"] == settings
        shipped.load_shipped(folder, entry, corpus)
    results = {(e["kind"], e["model"], e["seed"]) for e in manifest["results"]
               if e["kind"] not in ("real_model", "real_kv_cache", "real_kv_long", "real_replicates")}  # the real model: tests of its own
    if profile == "laptop":
        assert results == {("pruning", v, s) for v in ("base", "ega1", "ega_morlet", "conv_l4")
                           for s in BOOK_SEEDS[profile]} | {("kv_cache", v, s) for v in ("base", "ega1_causal")
                                                            for s in BOOK_SEEDS[profile]}
        for entry in manifest["results"]:
            shipped._verified(folder, entry)


def test_extra_seeds_are_read_from_the_shipped_weights(corpus, smoke_folder, monkeypatch):
    study = smoke_study(corpus, smoke_folder)
    assert study.seeds == (42, 43)
    assert smoke_study(corpus, smoke_folder, chosen_seeds=(44, 42, 44)).seeds == (42, 44)
    no_training(monkeypatch)
    other = study.seed_study(43)
    assert other is study.seed_study(43) and study.seed_study(42) is study
    assert (other.profile.seed, other.replicates, study.replicates) == (43, False, True)
    model = other.trained("base").model
    entry = next(e for e in shipped.read_manifest(smoke_folder)["entries"]
                 if (e["seed"], e["variant"], e["causal_gate"]) == (43, "base", False))
    reference = shipped.load_shipped(smoke_folder, entry, corpus)
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    assert other.trained("base").history.val[-1] == entry["val_loss"]


@pytest.mark.parametrize("damage", ["missing", "truncated", "tampered", "unlisted"])
def test_a_bad_shipped_seed_stops_the_build_in_one_line_naming_file_and_command(corpus, smoke_folder, damage,
                                                                               monkeypatch):
    path = smoke_folder / "base-seed43.safetensors"
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "tampered":
        data = bytearray(path.read_bytes())
        data[-10] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        import json

        manifest = json.loads((smoke_folder / shipped.MANIFEST).read_text())
        manifest["entries"] = [e for e in manifest["entries"] if e["file"] != path.name]
        (smoke_folder / shipped.MANIFEST).write_text(json.dumps(manifest))
    study = smoke_study(corpus, smoke_folder)
    no_training(monkeypatch)
    monkeypatch.setattr(Study, "seeds", property(lambda self: (43,)))  # the shipped seed alone: nothing to train
    with pytest.raises(shipped.CheckpointError if damage in ("truncated", "tampered") else shipped.MissingCheckpoint) as err:
        seed_losses(study)  # never a table of fewer seeds
    message = str(err.value)
    assert "\n" not in message
    assert ("base" in message and "seed 43" in message) if damage == "unlisted" else str(path) in message
    assert "python -m attnpod train --profile smoke --model base" in message.replace(" --seed 43", "") or \
        "python -m attnpod train --profile smoke --seed 43 --model base" in message


@pytest.mark.slow
def test_a_retrained_seed_wins_over_the_shipped_one(corpus, smoke_folder):
    from attnpod.train import train

    profile = get_profile("smoke", seed=43)
    model, history, path = train(profile, "base", corpus, "cpu", progress=False)
    study = smoke_study(corpus, smoke_folder)
    other = study.seed_study(43)
    assert other.trained("base").name == path.parent.name
    for a, b in zip(other.trained("base").model.parameters(), model.parameters()):
        assert torch.equal(a.float(), b.float())
    assert other.trained("ega1").name != other.trained("base").name  # not retrained: shipped


def test_seed_losses_have_every_seed_and_their_spread(corpus, smoke_folder, monkeypatch):
    study = smoke_study(corpus, smoke_folder)
    monkeypatch.setattr(Study, "seeds", property(lambda self: (43,)))  # shipped only: nothing to train
    table = seed_losses(study, causal=True)
    assert list(table.index) == [43]
    gain = table.loc[43, "EGA-1 − BASE"]
    assert gain == pytest.approx(table.loc[43, "EGA-1"] - table.loc[43, "BASE"])
    two = table.loc[[43, 43]].set_axis([1, 2])
    two.iloc[1] += 0.1
    spread = with_spread(two)
    assert spread.index[-1] == "mean ± sd (2 seeds)"
    assert spread.loc["mean ± sd (2 seeds)", "BASE"].endswith(f"± {0.1 / 2 ** 0.5:.4f}")


def test_the_checkpoint_stash_leaves_the_tree_light_and_restores_it(tmp_path):
    """scripts/stash_checkpoints.sh, the GPU runbook's first and last step, in a scratch repository."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(root / "scripts" / "stash_checkpoints.sh", repo / "scripts")
    for profile in ("laptop", "smoke", "paper"):
        (repo / "checkpoints" / profile).mkdir(parents=True)
        (repo / "checkpoints" / profile / "manifest.json").write_text(profile)

    def run(*args, check=True):
        done = subprocess.run(list(args), cwd=repo, capture_output=True, text=True)
        assert not check or done.returncode == 0, done.stderr
        return done

    run("git", "init", "-q")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    stash = tmp_path / "stash"
    run("bash", "scripts/stash_checkpoints.sh", "out", str(stash))
    tracked = run("git", "ls-files", "checkpoints").stdout.split()
    assert tracked == ["checkpoints/paper/manifest.json"]  # what a GPU call copies
    assert sorted(p.name for p in (repo / "checkpoints").iterdir()) == ["paper"]
    assert run("bash", "scripts/stash_checkpoints.sh", "out", str(stash), check=False).returncode != 0  # never twice
    run("bash", "scripts/stash_checkpoints.sh", "back", str(stash))
    assert run("git", "status", "--porcelain").stdout == ""
    assert (repo / "checkpoints" / "laptop" / "manifest.json").read_text() == "laptop"
    assert not stash.exists()


@pytest.mark.slow
def test_a_shipped_experiment_is_read_for_its_own_weights_and_its_subset_reproduces(corpus, smoke_folder):
    """A laptop-style build: the experiment's result shipped for the shipped weights is read, not computed,
    and the stated subset recomputed here matches it; a result that differs fails the check."""
    from attnpod import claims
    from attnpod.book import REPRODUCED_RULES, reproduction_check
    from attnpod.shipped import ship_result

    maker = smoke_study(corpus, smoke_folder).with_shipped_models()
    assert maker.shipped and "the shipped weights" in maker.run_stamp
    options = dict(n_random=0, n_perm=0)
    made = {"pruning": maker.pruning("base", **options), "kv_cache": maker.kv_cache("base", n_windows=8, **options)}
    for kind, result in made.items():
        assert result.source == "computed" and result.path.is_file()
        ship_result(kind, "base", 42, result.path, result.meta, smoke_folder)

    reader = smoke_study(corpus, smoke_folder).with_shipped_models()
    read = {"pruning": reader.pruning("base", **options), "kv_cache": reader.kv_cache("base", n_windows=8, **options)}
    for kind, result in read.items():
        assert result.source == "shipped" and result.path.is_relative_to(smoke_folder)
        table, verdict = reproduction_check(reader, kind, {"base": result})
        assert verdict.verdict == "reproduces", table
        assert list(table.index.get_level_values("rule")) == list(REPRODUCED_RULES[kind])
        assert table["max |Δ loss|"].max() <= claims.REPRODUCE_TOL
        result.losses[:] += 0.01  # a result that is not these weights' on these windows
        assert reproduction_check(reader, kind, {"base": result})[1].verdict == "does not reproduce"

    other = reader.seed_study(43)  # other weights: nothing is shipped for them, so it is computed
    assert other.pruning("base", **options).source == "computed"


@pytest.mark.slow
def test_every_laptop_seed_reads_its_shipped_experiments_without_an_analysis(corpus, monkeypatch):
    """Chapters 09 and 10 on every laptop seed: each seed's shipped results are found with the chapters'
    own options (the extra seeds: book.EXTRA_SEED_EXPERIMENTS) and read as they are, no analysis run (the
    rules' scores come with the result), and judged across the seeds."""
    from attnpod import claims
    from attnpod.book import (EXTRA_SEED_EXPERIMENTS, primary_comparison, seed_experiment_results,
                              seed_experiment_verdicts)

    def refuse(self, *args, **kwargs):
        raise AssertionError("an analysis was run to read a shipped result")

    monkeypatch.setattr(Study, "analysis", refuse)
    study = Study.create("laptop", device="cpu", progress=False).with_shipped_models()
    assert study.seeds == BOOK_SEEDS["laptop"]
    for kind in ("pruning", "kv_cache"):
        results = seed_experiment_results(study, kind)
        assert list(results) == list(BOOK_SEEDS["laptop"])
        for seed, by_model in results.items():
            for model, result in by_model.items():
                assert result.source == "shipped"
                assert len(result.random_losses) == (10 if seed == 42 else EXTRA_SEED_EXPERIMENTS[kind]["n_random"])
        table, cells = seed_experiment_verdicts(study, kind, results)
        rules = primary_comparison(kind).rules
        assert len(cells) == len(next(iter(results.values()))) * len(rules)
        assert [c for c in table.columns] == [f"seed {s}" for s in BOOK_SEEDS["laptop"]] + ["across seeds"]
        for cell in cells.values():
            assert cell.n == 5 and cell.robust
            phrases = {s: f"{w}, {cell.tiers[s]}" if cell.tiers.get(s) else w for s, w in cell.per_seed.items()}
            assert str(cell) == str(claims.across_seeds(phrases))  # the word and its tier, seed by seed


def test_every_shipped_split_is_made_again_from_its_stored_scores():
    """Provenance the re-scoring cannot see: each shipped result's splits, made again from the scores it
    stores with today's allocation code, equal the stored counts (all of them); a changed count is named."""
    import numpy as np

    from attnpod.config import get_profile
    from attnpod.experiments import kvcache, llmcache, pruning

    total = 0
    for folder in sorted((ROOT / "checkpoints").glob("*/results")):
        T = get_profile(folder.parent.name).block_size
        for path in sorted(folder.glob("*.npz")):
            if path.name.startswith("pruning-"):
                made = pruning.rederived(pruning.PruningResult.load(path))
            elif path.name.startswith("kv_cache-"):
                made = kvcache.rederived(kvcache.CacheResult.load(path), T)
            elif path.name.startswith("real_kv_cache-"):
                made = llmcache.rederived(llmcache.RealCacheResult.load(path))
            else:
                continue
            assert made.agree == made.total > 0 and not made.differ, (path.name, str(made))
            total += made.total
    assert total >= 1000
    result = kvcache.CacheResult.load(ROOT / "checkpoints" / "laptop" / "results" / "kv_cache-base-seed43.npz")
    k = result.rules.index(kvcache.H_STAR)
    result.allocations = result.allocations.copy()
    result.allocations[k, 0, :2] += np.array([1, -1])  # the same total, another split
    made = kvcache.rederived(result, get_profile("laptop").block_size)
    assert made.differ == ((kvcache.H_STAR, int(result.budgets[0])),) and made.agree == made.total - 1
