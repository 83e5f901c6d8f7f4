"""Trust: a clean-up that removes only an artifact store, damaged or planted files that give one line
(or are recomputed), read-only stores that can still be read, and requests checked before the work."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attnpod import config
from attnpod import store as storage
from attnpod.errors import CorruptFile, StoreError

from .conftest import corpus_file

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, env=None, cwd=None, user=None):
    cmd = [sys.executable, "-m", "attnpod", *args]
    if user is not None:  # run as another user (root ignores file permissions)
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})})


def _one_line(done, *fragments):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _make_store(root: Path) -> Path:
    """An artifact store at ``root``, made the way the package makes one, with an artifact in it."""
    old = os.environ.get("ATTNPOD_ARTIFACTS")
    os.environ["ATTNPOD_ARTIFACTS"] = str(root)
    try:
        folder = storage.artifact_dir("fields", "m", {"n": 1})
        (folder / "fields.npy").write_bytes(b"x")
    finally:
        os.environ["ATTNPOD_ARTIFACTS"] = old or ""
    return Path(root)


# ----------------------------------------------------------------------------- 1. clean-up

def test_clean_removes_a_store_and_only_its_own_folders(tmp_path):
    store = _make_store(tmp_path / "store")
    assert storage.is_store(store) and (store / storage.STORE_MARKER).is_file()
    (store / "notes.txt").write_text("mine")  # not the store's: kept, and so is the folder
    (store / "fields" / "keep.txt").write_text("mine")  # in a kind's folder, but not an entry the store made
    forged = store / "fields" / "m-000000000000"  # named like an entry, but its settings do not hash to its name
    forged.mkdir()
    (forged / "settings.json").write_text('{"n": 2}')
    outside = tmp_path / "precious"
    outside.mkdir()
    (store / "logs").symlink_to(outside, target_is_directory=True)  # a link is kept, never followed
    (outside / "train-smoke-base-seed42.log").write_text("mine")
    entry = next(p for p in (store / "fields").iterdir() if storage.own_entry(p, "fields"))
    dry = _cli("clean", "--dry-run", env={"ATTNPOD_ARTIFACTS": str(store)})
    assert dry.returncode == 0 and f"would remove {entry}" in dry.stdout and entry.is_dir()
    assert f"would keep {forged}" in dry.stdout
    done = _cli("clean", env={"ATTNPOD_ARTIFACTS": str(store)})
    assert done.returncode == 0, done.stderr
    assert f"removing {entry}" in done.stdout and f"keeping {store / 'logs'}" in done.stdout
    assert sorted(p.name for p in store.iterdir()) == ["fields", "logs", "notes.txt"]
    assert sorted(p.name for p in (store / "fields").iterdir()) == ["keep.txt", forged.name]
    assert (outside / "train-smoke-base-seed42.log").read_text() == "mine"
    for mine in ("notes.txt", "logs", "fields"):
        shutil.rmtree(store / mine) if (store / mine).is_dir() and not (store / mine).is_symlink() \
            else (store / mine).unlink()
    _make_store(store)
    (store / "logs").mkdir()
    (store / "logs" / "train-smoke-base-seed42.log").write_text("the store's")
    assert _cli("clean", env={"ATTNPOD_ARTIFACTS": str(store)}).returncode == 0 and not store.exists()
    again = _cli("clean", env={"ATTNPOD_ARTIFACTS": str(store)})
    assert again.returncode == 0 and "nothing removed" in again.stdout


@pytest.mark.parametrize("where", ["full folder", "home", "checkout", "above the checkout", "root"])
def test_a_store_is_made_only_in_a_new_or_empty_folder(tmp_path, monkeypatch, where):
    """Any command that writes to the store refuses, in one line, a folder that holds the user's files, the
    home folder, the checkout or a folder above it, and /; nothing there is marked or touched."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("mine")
    full = tmp_path / "full"
    full.mkdir()
    (full / "photos").mkdir()
    folder = {"full folder": full, "home": home, "checkout": ROOT, "above the checkout": ROOT.parent,
              "root": Path("/")}[where]
    before = sorted(p.name for p in folder.iterdir())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ATTNPOD_ARTIFACTS", str(folder))
    with pytest.raises(StoreError, match="will not make"):
        storage.artifact_dir("fields", "m", {"n": 1})
    assert sorted(p.name for p in folder.iterdir()) == before and not storage.is_store(folder)
    done = _cli("experiments", "--profile", "smoke", env={"ATTNPOD_ARTIFACTS": str(folder), "HOME": str(home),
                                                          "ATTNPOD_DATA": str(corpus_file())})
    _one_line(done, "will not make", "ATTNPOD_ARTIFACTS")


def test_a_new_an_empty_and_an_old_unmarked_store_are_used():
    """A folder that does not exist, an empty one, and one laid out as a store (only the store's kinds:
    a store made before stores were marked) become stores."""
    import tempfile

    base = Path(tempfile.mkdtemp())
    (base / "empty").mkdir()
    (base / "old" / "fields").mkdir(parents=True)
    for name in ("new", "empty", "old"):
        _make_store(base / name)
        assert storage.is_store(base / name)
    shutil.rmtree(base)


@pytest.mark.parametrize("decoy", ["plain", "parent", "src", "file", "forged"])
def test_clean_refuses_a_folder_that_is_not_a_store(tmp_path, decoy):
    folder = {"plain": tmp_path / "notes", "parent": ROOT.parent, "src": ROOT / "src", "file": tmp_path / "file",
              "forged": tmp_path / "forged"}[decoy]
    if decoy in ("plain", "forged"):
        (folder / "fields").mkdir(parents=True)
        (folder / "fields" / "keep.txt").write_text("mine")
    if decoy == "forged":
        (folder / storage.STORE_MARKER).write_text("not a store's marker")
    if decoy == "file":
        folder.write_text("mine")
    before = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else None
    done = _cli("clean", env={"ATTNPOD_ARTIFACTS": str(folder)})
    _one_line(done, str(folder))
    assert (sorted(p.name for p in folder.iterdir()) if folder.is_dir() else None) == before
    if decoy in ("plain", "forged"):
        assert (folder / "fields" / "keep.txt").read_text() == "mine"


def test_make_clean_artifacts_takes_a_relative_path_and_shell_characters_literally(tmp_path):
    """The Makefile hands the path to the package, never to a shell: spaces, $(...) and backticks are
    part of the name, nothing runs, and a relative path is taken from the checkout's root."""
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("make clean-artifacts runs the project's .venv (make env)")
    odd = tmp_path / "a store $(touch RAN1) `touch RAN2`; touch RAN3"
    _make_store(odd)
    sibling = tmp_path / "a"  # what a split path would name
    sibling.mkdir()
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "clean-artifacts"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "ATTNPOD_ARTIFACTS": str(odd)})
    assert done.returncode == 0, done.stderr
    assert not odd.exists() and sibling.is_dir()
    assert not [p for p in (*tmp_path.iterdir(), *ROOT.iterdir()) if p.name.startswith("RAN")]
    relative = Path(os.path.relpath(tmp_path / "rel store", ROOT))
    _make_store(ROOT / relative)
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "clean-artifacts"], capture_output=True, text=True,
                          env={**os.environ, "ATTNPOD_ARTIFACTS": str(relative)})
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "rel store").exists()
    parent = subprocess.run(["make", "-s", "-C", str(ROOT), "clean-artifacts"], capture_output=True, text=True,
                            env={**os.environ, "ATTNPOD_ARTIFACTS": ".."})
    assert parent.returncode != 0 and "not an attnpod artifact store" in parent.stderr and ROOT.is_dir()


def test_artifact_kinds_are_the_stores_own():
    with pytest.raises(ValueError, match="unknown artifact kind"):
        storage.artifact_dir("anything", "m", {})


# ----------------------------------------------------------------------------- 3. damaged caches

def test_a_planted_pickle_or_a_cut_array_in_the_store_is_recomputed(tmp_path):
    """A result file with a valid sidecar that is a pickle, garbage, or arrays of the wrong shape:
    recomputed with a warning, never unpickled, never a traceback."""
    from attnpod.experiments.pruning import PruningResult

    def result(windows=3):
        rng = np.random.default_rng(0)
        return PruningResult(np.array([2, 4]), ["uniform"], rng.random((1, 2, windows)), rng.random((1, 2, 2, 2)),
                             rng.random((5, 2, windows)), rng.random(windows), rng.random((2, 2)),
                             rng.random((2, windows)))

    path = tmp_path / "pruning.npz"
    good = result()
    good.save(path)
    assert storage.reusable(path, lambda p: PruningResult.load(p) is not None)
    ran = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return (Path.touch, (ran,))

    def savez(tmp, **arrays):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    plants = {
        "pickle": lambda tmp: savez(tmp, meta=np.array(["{}"]), losses=np.array([Planted()], dtype=object)),
        "garbage": lambda tmp: tmp.write_bytes(b"PK\x03\x04 garbage"),
        "cut": lambda tmp: result().__class__(**{**result().__dict__, "losses": good.losses[..., :2]}).save(tmp),
        "no meta": lambda tmp: savez(tmp, losses=good.losses),
    }
    for name, plant in plants.items():
        if name == "cut":
            bad = tmp_path / "cut.npz"
            plant(bad)
            storage.write_verified(path, lambda tmp: shutil.copy(bad, tmp))
        else:
            storage.write_verified(path, lambda tmp: plant(Path(tmp)) or None)
        with pytest.warns(RuntimeWarning, match="recomputing"):
            assert not storage.reusable(path, lambda p: PruningResult.load(p) is not None), name
        with pytest.raises(CorruptFile, match="pruning.npz"):
            PruningResult.load(path)
    assert not ran.exists()


def test_a_corrupt_fields_file_is_recomputed(corpus):
    from attnpod.models import GPT, GPTConfig
    from attnpod.pipeline import model_fields

    profile = config.get_profile("smoke", n_layer=1, n_head=2, n_embd=16, block_size=16, n_snapshots=4)
    model = GPT(GPTConfig(vocab_size=corpus.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=16))
    fields = np.array(model_fields(model, corpus, profile, "m", progress=False))
    (path,) = storage.artifacts_root().rglob("fields.npy")
    storage.write_verified(path, lambda tmp: Path(tmp).write_bytes(b"\x93NUMPY garbage"))
    with pytest.warns(RuntimeWarning, match="recomputing"):
        again = model_fields(model, corpus, profile, "m", progress=False)
    np.testing.assert_array_equal(again, fields)


# ----------------------------------------------------------------------------- 4. read-only stores, paths, sizes

@pytest.mark.slow
def test_a_read_only_store_is_read_and_a_needed_write_is_one_line(tmp_path):
    """A store nobody may write to still serves a trained model; work that must write says so in one line."""
    store = Path(os.path.realpath(tmp_path)) / "ro"
    env = {"ATTNPOD_ARTIFACTS": str(store), "ATTNPOD_DATA": str(corpus_file())}
    trained = _cli("train", "--profile", "smoke", "--model", "base", env=env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    user = None
    if os.geteuid() == 0:  # root ignores permissions: read as nobody, through folders nobody may enter
        if not shutil.which("setpriv"):
            pytest.skip("setpriv is needed to drop root for this test")
        user = 65534
        import tempfile

        home = Path(tempfile.mkdtemp())  # nobody's matplotlib cache (not the store)
        home.chmod(0o777)
        env |= {"HOME": str(home), "MPLCONFIGDIR": str(home)}
        for folder in (store, *store.parents):
            if folder == Path("/"):
                break
            folder.chmod(folder.stat().st_mode | 0o005)
    for path in (store, *store.rglob("*")):
        path.chmod(path.stat().st_mode & ~0o222 | (0o555 if path.is_dir() else 0o444))
    try:
        again = _cli("train", "--profile", "smoke", "--model", "base", env=env, user=user)
        assert again.returncode == 0 and "step 30" in again.stdout, again.stderr[-2000:]
        analyse = _cli("analyse", "--profile", "smoke", "--model", "base", env=env, user=user)
        _one_line(analyse, str(store), "not writable")
    finally:
        for path in (store, *store.rglob("*")):
            path.chmod(path.stat().st_mode | 0o200)


def test_a_store_path_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = _cli("analyse", "--profile", "smoke", "--model", "base", env={"ATTNPOD_ARTIFACTS": str(blocker),
                                                                       "ATTNPOD_DATA": str(corpus_file())})
    _one_line(done, str(blocker), "is a file")


@pytest.mark.parametrize("out, fragment", [("file/fig.png", "a file stands where a folder should be"),
                                           ("folder.png", "cannot write the figure")])
def test_figure_output_problems_are_one_line_before_any_work(tmp_path, out, fragment):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder.png").mkdir()
    done = _cli("figure", "scalograms", "--profile", "smoke", "--out", str(tmp_path / out),
                env={"ATTNPOD_ARTIFACTS": str(tmp_path / "art"), "ATTNPOD_DATA": str(corpus_file())})
    _one_line(done, fragment)
    assert not (tmp_path / "art" / "checkpoints").exists()  # refused before training


@pytest.mark.parametrize("dpi", ["0", "-5", "x"])
def test_a_bad_dpi_is_a_usage_error(tmp_path, dpi):
    done = _cli("figure", "scalograms", "--out", str(tmp_path / "f.png"), "--dpi", dpi)
    assert done.returncode == 2 and "--dpi" in done.stderr and "Traceback" not in done.stderr


def test_an_ensemble_too_large_for_the_disk_is_refused_at_once(tmp_path):
    import time

    start = time.perf_counter()
    done = _cli("analyse", "--profile", "smoke", "--model", "base", "--snapshots", "1000000000",
                env={"ATTNPOD_ARTIFACTS": str(tmp_path), "ATTNPOD_DATA": str(corpus_file())})
    _one_line(done, "N = 1000000000", "GB")
    assert time.perf_counter() - start < 30 and not list(tmp_path.rglob("*.tmp"))
    assert not (tmp_path / "checkpoints").exists()


def test_a_killed_runs_temporary_files_are_swept(tmp_path):
    folder = tmp_path / "fields"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = folder / f"fields.npy.{dead.stdout.strip()}.deadbeef.tmp"
    orphan.write_bytes(b"half an ensemble")
    alive = storage.temporary_path(folder / "fields.npy")  # this process: still writing it
    alive.write_bytes(b"in progress")
    storage.write_verified(folder / "other.npy", lambda tmp: Path(tmp).write_bytes(b"x"))
    assert not orphan.exists() and alive.exists()


def test_a_terminated_run_removes_its_temporary_file(tmp_path):
    """SIGTERM unwinds like an exception, so the streamed ensemble's temporary file goes too."""
    import signal
    import time

    script = (
        "import sys, time; from pathlib import Path; from attnpod.store import publish\n"
        "from attnpod.cli import _terminated; import signal; signal.signal(signal.SIGTERM, _terminated)\n"
        f"publish(Path({str(tmp_path / 'out.npy')!r}), lambda tmp: (tmp.write_bytes(b'x'), print('ready', flush=True),"
        " time.sleep(60)))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.stdout.readline().strip() == "ready"
    assert list(tmp_path.glob("*.tmp"))
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    time.sleep(0.1)
    assert proc.returncode == 128 + signal.SIGTERM and not list(tmp_path.glob("*.tmp"))


# ----------------------------------------------------------------------------- help texts

def test_help_texts_say_what_the_commands_do():
    ship = _cli("ship", "--help").stdout
    assert "train at once" not in ship and "shipped one after the other" in " ".join(ship.split())
    figure = " ".join(_cli("figure", "--help").stdout.split())
    assert "training and analysing first what is not cached" in figure
    assert "hours" not in _cli("train", "--help").stdout


def test_debug_works_after_the_subcommand(tmp_path):
    env = {"ATTNPOD_ARTIFACTS": str(tmp_path), "ATTNPOD_DATA": str(corpus_file())}
    done = _cli("analyse", "--profile", "smoke", "--model", "base", "--device", "tpu", "--debug", env=env)
    assert done.returncode != 0 and "Traceback" in done.stderr


# ----------------------------------------------------------------------------- adapters and the analysis

def test_bf16_attention_is_accepted_and_logits_are_not():
    from attnpod import adapters

    T = 16
    mask = ~torch.ones(T, T, dtype=torch.bool).tril()
    probs = torch.softmax(torch.randn(2, 2, T, T).masked_fill(mask, -1e9), -1).to(torch.bfloat16)
    assert (probs.float().sum(-1) - 1).abs().max() > adapters.ROW_SUM_TOL  # bf16 rounding shows in the sums
    assert adapters.fields_from_attentions([probs]).shape == (2, 1, T, T)
    with pytest.raises(adapters.AttentionInputError, match="row-stochastic"):
        adapters.fields_from_attentions([(torch.randn(2, 2, T, T).masked_fill(mask, 0)).to(torch.bfloat16)])


@pytest.mark.parametrize("bad, message", [("acausal", "not causal"), ("T1", "at least 2"), ("N1", "2 snapshots"),
                                          ("shape", "square")])
def test_the_analysis_refuses_fields_it_cannot_analyse(bad, message):
    from attnpod.analysis import FieldInputError, analyse_fields

    rng = np.random.default_rng(0)
    fields = np.tril(rng.random((4, 1, 8, 8))).astype(np.float32)
    fields /= fields.sum(-1, keepdims=True)
    fields = {"acausal": np.full((4, 1, 8, 8), 1 / 8, np.float32), "T1": np.ones((4, 1, 1, 1), np.float32),
              "N1": fields[:1], "shape": fields[..., :-1]}[bad]
    with pytest.raises(FieldInputError, match=message):
        analyse_fields(fields, n_boot=0, n_half=0, progress=False)


@pytest.mark.parametrize("windows", [np.array([[0.7, 1.2]]), torch.tensor([[0.5, 2.0]]), np.array([[True, False]])])
def test_float_token_windows_are_refused(windows):
    from attnpod.errors import ParameterError
    from attnpod.data import token_windows
    from attnpod.fields import collect_fields
    from attnpod.models import GPT, GPTConfig

    with pytest.raises(ParameterError, match="integer ids"):
        token_windows(windows)
    with pytest.raises(ParameterError, match="integer ids"):
        collect_fields(GPT(GPTConfig(vocab_size=65, n_layer=1, n_head=1, n_embd=8, block_size=8)), windows,
                       progress=False)
    assert token_windows(np.array([[1, 2]], dtype=np.int32)).dtype == torch.long


# ----------------------------------------------------------------------------- book/execute.py

def _execute(*args):
    return subprocess.run([sys.executable, str(ROOT / "book" / "execute.py"), "--profile", "smoke", *args],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("args, fragment", [(["--only", "99"], "matches no chapter"),
                                            (["--only", "01", "-p", "sead=7"], "unknown parameter(s) ['sead']"),
                                            (["-p", "profile=paper"], "use --profile")])
def test_execute_refuses_what_it_would_ignore(args, fragment):
    status = ROOT / "book" / "status.md"
    before = status.read_text() if status.exists() else None
    done = _execute(*args)
    assert done.returncode == 2 and fragment in done.stderr, done.stderr
    assert (status.read_text() if status.exists() else None) == before


def test_execute_rerun_hint_keeps_the_settings():
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute", ROOT / "book" / "execute.py")
    execute = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(execute)
    hint = execute.rerun_command("notebooks/03_scalograms", "laptop", {"seed": 7, "overrides": {"n_snapshots": 50}})
    assert hint == "python book/execute.py --profile laptop --only 03 -p seed=7 -p 'overrides={'n_snapshots': 50}'"
    shares = execute.chapter_parameters(ROOT, ["notebooks/03_scalograms", "notebooks/11_verdicts"], {"seeds": [1]})
    assert shares == {"notebooks/03_scalograms": {}, "notebooks/11_verdicts": {"seeds": [1]}}


# ----------------------------------------------------------------------------- trial runs never replace shipped results

def test_a_trial_real_model_run_never_replaces_the_shipped_analyses(tmp_path):
    """``real-model --windows 2 --ship`` against the book's manifest is refused in one line before any work
    (the 200-window analyses stay); the manifest is untouched."""
    folder = tmp_path / "ship"
    folder.mkdir()
    manifest = (ROOT / "checkpoints" / "laptop" / "manifest.json").read_bytes()
    (folder / "manifest.json").write_bytes(manifest)
    done = _cli("real-model", "--windows", "2", "--boot", "0", "--halves", "0", "--ship", "--to", str(folder),
                env={"ATTNPOD_ARTIFACTS": str(tmp_path / "art"), "ATTNPOD_DATA": str(corpus_file())})
    _one_line(done, "shipped with other settings", "n_windows", "--replace")
    assert (folder / "manifest.json").read_bytes() == manifest


def test_shipping_a_result_made_with_other_settings_needs_replace(tmp_path):
    from attnpod import shipped

    source = tmp_path / "result.npz"
    source.write_bytes(b"a result")
    folder = tmp_path / "ship"
    first = shipped.ship_result("pruning", "base", 42, source, {"n_random": 10, "seed": 42}, folder)
    again = shipped.ship_result("pruning", "base", 42, source, {"n_random": 10, "seed": 42}, folder)  # the same
    assert again["settings"] == first["settings"]
    with pytest.raises(shipped.CheckpointError, match="other settings .*n_random.*--replace"):
        shipped.ship_result("pruning", "base", 42, source, {"n_random": 2, "seed": 42}, folder)
    assert shipped.read_manifest(folder)["results"][0]["settings"]["n_random"] == 10
    shipped.ship_result("pruning", "base", 42, source, {"n_random": 2, "seed": 42}, folder, replace=True)
    assert shipped.read_manifest(folder)["results"][0]["settings"]["n_random"] == 2


# ----------------------------------------------------------------------------- damaged caches of the new kinds

def _memo_with(path, damage):
    from attnpod.experiments.budgets import Evaluations

    ev = Evaluations(progress=False, path=path)
    ev("h2o", "8,8", 2, compute=lambda: np.array([1.0, 2.0]))
    ev.close()
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "one byte":
        i = data.index(np.array([2.0]).tobytes())  # a stored loss: the file still reads, with another value
        path.write_bytes(data[:i] + bytes([data[i] ^ 1]) + data[i + 1:])
    elif damage == "emptied":
        path.write_bytes(b"")
    elif damage == "object array":
        with open(path, "wb") as fh:
            np.savez(fh, **{"h2o|8,8|2": np.array([object(), 1.0], dtype=object)})
        storage.write_verified(path, lambda tmp: tmp.write_bytes(path.read_bytes()))  # even with a matching record
    elif damage == "other values, re-recorded":
        with open(path, "wb") as fh:
            np.savez(fh, **{"h2o|8,8|2": np.array([np.nan, 1.0])})
        storage.write_verified(path, lambda tmp: tmp.write_bytes(path.read_bytes()))


@pytest.mark.parametrize("damage", ["truncated", "one byte", "emptied", "object array", "other values, re-recorded"])
def test_a_damaged_memo_of_evaluations_is_reported_and_its_evaluations_made_again(tmp_path, damage):
    from attnpod.experiments.budgets import Evaluations

    path = tmp_path / "evaluations.npz"
    _memo_with(path, damage)
    with pytest.warns(RuntimeWarning, match="evaluations are made again"):
        ev = Evaluations(progress=False, path=path)
    calls = []
    assert ev("h2o", "8,8", 2, compute=lambda: calls.append(1) or np.array([1.0, 2.0])).tolist() == [1.0, 2.0]
    assert calls == [1]
    again = Evaluations(progress=False, path=path)  # the rewritten memo is sound and reused
    assert again("h2o", "8,8", 2, compute=lambda: pytest.fail("recomputed")).tolist() == [1.0, 2.0]


def _model_cache(folder):
    import json

    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"weights")
    files = {p.name: storage.sha256_file(p) for p in sorted(folder.iterdir())}
    storage.write_verified(folder / "files.json", lambda f: f.write_text(json.dumps(files)))


@pytest.mark.parametrize("damage", ["garbled listing", "listing of another type", "empty listing, damaged weights",
                                    "weights changed and re-listed", "an unlisted file", "no record"])
def test_a_damaged_model_cache_is_not_sound(tmp_path, damage):
    import json

    from attnpod.pretrained import _cache_sound

    folder = tmp_path / "model"
    _model_cache(folder)
    assert _cache_sound(folder) is True and _cache_sound(tmp_path / "none") is None
    listing = folder / "files.json"
    if damage == "garbled listing":
        listing.write_text("{not json")
    elif damage == "listing of another type":
        listing.write_text("[1, 2]")
    elif damage == "empty listing, damaged weights":
        (folder / "model.safetensors").write_bytes(b"damaged")
        storage.write_verified(listing, lambda f: f.write_text("{}"))
    elif damage == "weights changed and re-listed":
        (folder / "model.safetensors").write_bytes(b"other weights")
        listing.write_text(json.dumps({p.name: storage.sha256_file(p) for p in folder.iterdir()
                                       if p.name in ("config.json", "model.safetensors")}))
    elif damage == "an unlisted file":
        (folder / "extra.safetensors").write_bytes(b"x")
    elif damage == "no record":
        (folder / "files.json.sha256").unlink()
    assert _cache_sound(folder) is False


@pytest.mark.parametrize("damage", ["garbled", "a list", "missing layers", "no record", "edited"])
def test_a_damaged_fields_record_of_the_real_model_is_reported(tmp_path, damage):
    import json

    from attnpod.pretrained import SMOLLM2, _statistics_sound

    path = tmp_path / "statistics.json"
    record = {"per_head": {"sink": [[0.5] * 9] * SMOLLM2.n_layer}, "loss": 2.5, "loss_windows": 8}
    storage.write_verified(path, lambda f: f.write_text(json.dumps(record)))
    assert _statistics_sound(path, SMOLLM2) and not _statistics_sound(tmp_path / "none.json", SMOLLM2)
    text = {"garbled": "{oops", "a list": "[]", "missing layers": json.dumps({**record, "per_head": {"sink": [[1]]}}),
            "no record": None, "edited": json.dumps({**record, "loss": 0.1})}[damage]
    if damage == "no record":
        (tmp_path / "statistics.json.sha256").unlink()
    elif damage == "edited":
        path.write_text(text)  # the record no longer matches its hash
    else:
        storage.write_verified(path, lambda f: f.write_text(text))
    with pytest.warns(RuntimeWarning, match="made again"):
        assert not _statistics_sound(path, SMOLLM2)


def test_a_killed_dequantisations_temporary_folder_is_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"model.{dead.stdout.strip()}.0123abcd.tmp"
    (orphan / "sub").mkdir(parents=True)
    (orphan / "model.safetensors").write_bytes(b"half")
    alive = storage.temporary_path(tmp_path / "model")
    alive.mkdir()
    assert storage.sweep_orphans(tmp_path) == [orphan]
    assert not orphan.exists() and alive.is_dir()


# ----------------------------------------------------------------------------- real-model results against their entries

def _real_model_folder(tmp_path):
    """A copy of the book's shipped SmolLM2 analyses and their manifest (the other entries left out)."""
    import json

    source = ROOT / "checkpoints" / "laptop"
    folder = tmp_path / "ship"
    (folder / "results").mkdir(parents=True)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["entries"] = []
    manifest["results"] = [e for e in manifest["results"] if e["kind"] == "real_model" and "smollm2" in e["model"]]
    for entry in manifest["results"]:
        shutil.copy(source / entry["file"], folder / entry["file"])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, manifest


def _rewrite(folder, manifest, change):
    import json

    change(manifest)
    for entry in manifest["results"]:
        entry["sha256"] = storage.sha256_file(folder / entry["file"])
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_real_model_analysis_is_checked_against_what_its_entry_claims(tmp_path):
    from attnpod.pretrained import SMOLLM2, analyse_pretrained

    folder, manifest = _real_model_folder(tmp_path)
    assert {k: v.meta["source"] for k, v in analyse_pretrained("", SMOLLM2, shipped_folder=folder).items()} == \
        {"causal": "shipped", "published": "shipped"}
    causal, published = (next(e for e in manifest["results"] if e["model"].endswith(o)) for o in ("causal", "published"))
    shutil.copy(folder / causal["file"], folder / published["file"])  # the causal analysis under the published entry
    _rewrite(folder, manifest, lambda m: None)
    with pytest.raises(CorruptFile, match="is the causal analysis, not the published one"):
        analyse_pretrained("", SMOLLM2, shipped_folder=folder)
    folder, manifest = _real_model_folder(tmp_path / "edited")
    _rewrite(folder, manifest, lambda m: [e["settings"].update(n_boot=100) for e in m["results"]])
    with pytest.raises(CorruptFile, match="stored settings differ .n_boot"):
        analyse_pretrained("", SMOLLM2, n_boot=100, shipped_folder=folder)


def test_a_real_model_cache_grid_of_other_windows_is_refused_under_the_books_entry(tmp_path):
    """A 4-window grid shipped under the 32-window settings is not served as the book's result."""
    from attnpod.experiments import llmcache
    from attnpod.shipped import ship_result

    settings = llmcache.settings()
    K, L, W = len(settings["budgets"]), 30, 4
    small = llmcache.RealCacheResult(
        np.array(settings["budgets"]), [llmcache.UNIFORM], ["h2o"], [False], np.ones((1, K, W)),
        np.tile(np.array(settings["budgets"])[:, None], (1, 1, L)), np.ones(W),
        np.tile(np.array(settings["budgets"])[None, :, None], (settings["n_random"], 1, L)),
        np.ones((settings["n_random"], K, 2)), [], np.zeros((0, K, 0, L)), np.zeros((0, K, 0, 2)), np.zeros(L),
        {**settings, "scores": {"∝ H*(0.1)": [1.0] * L}})
    small.save(tmp_path / "small.npz")
    ship_result(llmcache.RESULT_KIND, "smollm2-135m-instruct-q4_1", 42, tmp_path / "small.npz",
                {**settings, "scores": small.meta["scores"]}, tmp_path / "ship")
    with pytest.raises(CorruptFile, match="4 evaluation windows, the settings ask for 32"):
        llmcache.cache_experiment("", settings, shipped_folder=tmp_path / "ship", shipped_only=True)


@pytest.mark.parametrize("args, message", [
    (["experiments", "--real-model", "--device", "cuda"], "CUDA is not available"),
    (["experiments", "--real-model", "--device", "tpu"], "unknown device"),
    (["experiments", "--real-model", "--seed", "-2"], "seed must be an integer of at least 0"),
    (["experiments", "--profile", "smoke", "--seed", "-3"], "seed must be an integer"),
    (["real-model", "--boot", "-1"], "--boot must be at least 0"),
    (["real-model", "--halves", "-4"], "--halves must be at least 0")])
def test_bad_values_are_one_line_before_any_work(tmp_path, args, message):
    done = _cli(*args, env={"ATTNPOD_ARTIFACTS": str(tmp_path / "art"), "ATTNPOD_DATA": str(corpus_file())})
    _one_line(done, message)
    assert not (tmp_path / "art" / "kv_cache").exists() and not (tmp_path / "art" / "fields").exists()


def test_experiment_counts_and_budgets_are_checked_before_any_work(monkeypatch):
    from attnpod.experiments import kvcache, llmcache
    from attnpod.errors import ParameterError
    from attnpod.study import Study

    with pytest.raises(ParameterError, match="at least one budget"):
        llmcache.check_budgets([], 256)
    study = Study.create("smoke", data_path=str(corpus_file()), progress=False)
    monkeypatch.setattr(Study, "trained", lambda *a: pytest.fail("a model was trained before the check"))
    for bad in ({"n_windows": 0}, {"null_windows": 0}, {"n_perm": -1}, {"n_random": 1.5}):
        with pytest.raises(ParameterError, match=next(iter(bad))):
            study.kv_cache("base", **bad)
    with pytest.raises(ParameterError, match="n_eval"):
        study.pruning("base", n_eval=0)
    assert kvcache.MINIMUMS["n_windows"] == 2


def test_a_full_disk_or_read_only_store_under_the_model_cache_is_one_line(tmp_path, monkeypatch):
    """De-quantising the real model into a store that is full (or read-only) is a one-line StoreError
    naming the folder, not a traceback; nothing half-written is left behind."""
    import errno
    import types

    from attnpod import pretrained

    class Model:
        hf_quantizer, is_quantized, config = None, False, types.SimpleNamespace()

        def save_pretrained(self, folder, **kwargs):
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "model.safetensors").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")

    auto = types.SimpleNamespace(from_pretrained=lambda *a, **k: Model())
    fake = types.SimpleNamespace(__version__="0", AutoModelForCausalLM=auto, AutoTokenizer=auto)
    monkeypatch.setattr(pretrained, "_transformers", lambda: fake)
    monkeypatch.setattr(pretrained, "verified_gguf", lambda spec: tmp_path / "model.gguf")
    monkeypatch.setenv("ATTNPOD_ARTIFACTS", str(tmp_path / "art"))
    with pytest.raises(StoreError, match="cannot write the de-quantised .* no space left on the device"):
        pretrained.load_pretrained(pretrained.SMOLLM2)
    left = [p for p in (tmp_path / "art" / "pretrained").rglob("*") if p.name.endswith(".tmp")]
    assert left == []


def test_a_chapter_count_of_zero_is_one_line_not_a_reshape_error():
    from attnpod.errors import ParameterError
    from attnpod.experiments import llmcache
    from attnpod.pretrained import SMOLLM2, analysis_settings

    with pytest.raises(ParameterError, match="windows must be an integer of at least 1"):
        llmcache.decode_check(None, torch.zeros((0, 8), dtype=torch.long), 32)
    with pytest.raises(ParameterError, match="n_windows must be an integer of at least 1"):
        llmcache.reproduce(None, None, torch.zeros((2, 9), dtype=torch.long), [], 0, 0)
    for bad in ({"n_boot": -1}, {"n_half": -2}, {"seed": -1}, {"n_windows": 1}):
        with pytest.raises(ParameterError, match=next(iter(bad))):
            analysis_settings(SMOLLM2, **{"n_windows": 4, "length": 16, "seed": 0, "n_boot": 0, "n_half": 0,
                                          "n_rank": 2, **bad})
