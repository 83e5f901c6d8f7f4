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
from attnpod.errors import CorruptFile

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
    outside = tmp_path / "precious"
    outside.mkdir()
    (store / "logs").symlink_to(outside, target_is_directory=True)  # a link is removed, never followed
    dry = _cli("clean", "--dry-run", env={"ATTNPOD_ARTIFACTS": str(store)})
    assert dry.returncode == 0 and f"would remove {store / 'fields'}" in dry.stdout and (store / "fields").is_dir()
    done = _cli("clean", env={"ATTNPOD_ARTIFACTS": str(store)})
    assert done.returncode == 0, done.stderr
    assert f"removing {store / 'fields'}" in done.stdout and f"removing {store / 'logs'}" in done.stdout
    assert sorted(p.name for p in store.iterdir()) == ["notes.txt"] and outside.is_dir()
    (store / "notes.txt").unlink()
    _make_store(store)
    assert _cli("clean", env={"ATTNPOD_ARTIFACTS": str(store)}).returncode == 0 and not store.exists()
    again = _cli("clean", env={"ATTNPOD_ARTIFACTS": str(store)})
    assert again.returncode == 0 and "nothing removed" in again.stdout


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
