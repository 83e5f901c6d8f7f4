"""Execute the book's notebooks headless, then write the build's status page.

    python book/execute.py [--profile smoke|laptop|paper] [--only 03] [-p name=value ...]

Each ``notebooks/NN_*.py`` (Jupytext py:percent) named in ``_toc.yml`` is converted
in memory and run by papermill with the parameters given; the executed notebook
lands beside it as ``.ipynb`` (git-ignored), which Jupyter Book renders.

The first chapter trains the models every other chapter reads, so it runs alone,
with every core. The others then run ``--jobs`` at a time, each kernel with an
equal share of the cores as its thread pool: on 2 cores two single-threaded
kernels get more done than one two-threaded one, and chapters that wait on the
same cached artifact take turns (the artifact store locks). The longest chapters
start first: by their time in the last build of the profile, else ``TYPICAL``.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import datetime
import importlib.metadata
import json
import multiprocessing
import os
import platform
import re
import sys
import time
from pathlib import Path

import jupytext
import papermill
import yaml

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "attnpod"  # registered by `make env` in the project's .venv
# What orders the chapters when no earlier build of the profile gives times: each profile's long chapters
# and their measured seconds (laptop: a fresh clone on 2026-12-01, chapters 08 and 11 of 1352 s; on 2026-12-03 chapter 01 took 747 s and 08, 14, 17 and 11 452, 316, 310 and 329 s; smoke: a
# fresh store on 2026-12-02, chapters 14, 10, 13 and 09 of 565 s of chapter time, where the de-quantised
# real model, chapters 13 and 14 share it through the store's lock). The rest start in the book's order.
TYPICAL = {"laptop": {"notebooks/08_errata": 415.0, "notebooks/11_verdicts": 315.0},
           "smoke": {"notebooks/14_real_kv_cache": 135.0, "notebooks/10_kv_cache": 94.0,
                     "notebooks/13_real_model": 71.0, "notebooks/09_head_allocation": 66.0}}
HEARTBEAT = 60  # seconds between the lines that say which chapters are still running
KERNEL_STARTS = 2  # a chapter whose kernel does not start (a port taken at the same moment) is started again once


def chapters(root: Path) -> list[str]:
    """Notebook paths (without suffix) in the order ``_toc.yml`` lists them."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str) and node[key].startswith("notebooks/"):
                    found.append(node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    return found


def parse_parameter(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name.strip(), value


def declared_parameters(source: Path) -> set[str]:
    """The names a chapter's ``parameters`` cell assigns (what ``-p`` may set in it)."""
    for cell in jupytext.read(source).cells:
        if "parameters" in cell.metadata.get("tags", []):
            tree = ast.parse(cell.source)
            return {target.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(target, ast.Name)}
    return set()


def chapter_parameters(root: Path, names: list[str], given: dict) -> dict[str, dict]:
    """Each chapter's share of the ``-p`` parameters (those its parameters cell declares); a name no
    chosen chapter declares is an error, as is ``profile`` (``--profile`` sets it, for every chapter)."""
    if "profile" in given:
        raise ValueError("-p profile=... is refused: use --profile, which sets every chapter's profile")
    declared = {name: declared_parameters(root / f"{name}.py") for name in names}
    unknown = set(given) - set().union(*declared.values())
    if unknown:
        known = sorted(set().union(*declared.values()) - {"profile"})
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for the chapters run; known: {known}")
    return {name: {k: v for k, v in given.items() if k in declared[name]} for name in names}


def rerun_command(name: str, profile: str, given: dict) -> str:
    """The command that reruns one chapter with this build's settings."""
    extra = "".join(f" -p {k}={v!r}" if " " not in repr(v) else f" -p '{k}={v!r}'" for k, v in given.items())
    return f"python book/execute.py --profile {profile} --only {Path(name).name[:2]}{extra}"


def tag_injected_cell(path: Path) -> None:
    """Fold papermill's injected-parameters cell in the rendered book."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
    nbformat.write(nb, path)


def failure_line(name: str, err, target: Path, rerun: str) -> str:
    """One line that says which chapter failed, why, and what to do (the full traceback is in the notebook)."""
    message = " ".join(str(err.evalue).split())
    if len(message) > 400:
        message = message[:400] + " …"
    chapter = Path(name).name
    return (f"FAILED {chapter}: {err.ename}: {message}\n"
            f"  (cell {err.exec_count}; the executed notebook with the traceback: {target}; "
            f"rerun this chapter alone: {rerun})")


class quiet_kernel:
    """Within it, standard error (and so the kernel's: the TCP warning, a cell's warnings) goes to ``log``, so
    that the build's own lines read alone; afterwards it is restored (the first chapter runs in the build's
    own process). A failure line names the log."""

    def __init__(self, log: Path):
        self.log = log

    def __enter__(self):
        self.log.parent.mkdir(parents=True, exist_ok=True)
        sys.stderr.flush()
        self.saved, self.handle = os.dup(2), open(self.log, "w")
        os.dup2(self.handle.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.handle.close()
        return False


def unpaired(notebook):
    """The chapter as a notebook with no Jupytext pairing: its executed copy beside the ``.py`` is an output,
    never a twin that JupyterLab would compare with the source (and refuse both when it is newer)."""
    notebook.metadata.pop("jupytext", None)
    return notebook


def run_chapter(root: Path, name: str, parameters: dict, threads: int | None,
                rerun: str = "") -> tuple[str, float, str | None]:
    """Execute one chapter (in a worker process); (name, seconds, None) or (name, seconds, failure line)."""
    if threads:  # the kernel inherits these: torch's and OpenBLAS's pools
        os.environ.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    source, target = root / f"{name}.py", root / f"{name}.ipynb"
    print(f"[{parameters['profile']}] {name} ...", flush=True)
    log = root / "_build" / "logs" / f"{Path(name).name}.log"
    start = time.perf_counter()
    for attempt in range(1, KERNEL_STARTS + 1):
        try:
            with quiet_kernel(log):
                papermill.execute_notebook(unpaired(jupytext.read(source)), str(target), parameters=parameters,
                                           kernel_name=KERNEL, cwd=str(source.parent), progress_bar=False)
            break
        except papermill.PapermillExecutionError as err:
            return name, time.perf_counter() - start, failure_line(name, err, target, rerun) + f"; its log: {log}"
        except RuntimeError as err:  # the kernel did not start: two kernels starting at once can race for a port
            if attempt == KERNEL_STARTS:
                return name, time.perf_counter() - start, (f"FAILED {Path(name).name}: its kernel did not start "
                                                           f"({err}); its log: {log}; rerun: {rerun}")
            print(f"[{parameters['profile']}] {name}: its kernel did not start ({err}); starting it again", flush=True)
    tag_injected_cell(target)
    return name, time.perf_counter() - start, None


def run_chapters(root: Path, names: list[str], parameters: dict[str, dict], jobs: int, threads: int | None,
                 reruns: dict[str, str] | None = None) -> tuple[list[tuple[str, float]], str | None]:
    """Run ``names`` ``jobs`` at a time, in that order of start, each with ``parameters[name]``; the times
    and the first failure line. After a failure no other chapter starts (those running finish)."""
    timings, failure = [], None
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no inherited threads
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        running, started = {}, time.monotonic()
        for name in names:
            running[pool.submit(run_chapter, root, name, parameters[name], threads,
                                (reruns or {}).get(name, ""))] = name
        pending = set(running)
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=HEARTBEAT,
                                                    return_when=concurrent.futures.FIRST_COMPLETED)
            if not done:  # a heartbeat: what is still running, and for how long the build has run
                busy = [running[f] for f in pending if f.running()]
                print(f"[{parameters[names[0]]['profile']}] {time.monotonic() - started:.0f} s: running "
                      f"{', '.join(Path(n).name for n in busy) or 'nothing yet'}; {len(pending)} chapter(s) left",
                      flush=True)
                continue
            for future in done:
                try:
                    name, seconds, error = future.result()
                except Exception as err:  # anything else a worker met: one line, never a lost traceback
                    name, seconds = running[future], 0.0
                    error = f"FAILED {Path(name).name}: {type(err).__name__}: {' '.join(str(err).split())[:400]}"
                if error:
                    failure = failure or error
                    continue
                timings.append((name, seconds))
                print(f"[{parameters[name]['profile']}] {name}: {seconds:.1f} s", flush=True)
            if failure:
                pool.shutdown(wait=True, cancel_futures=True)
                break
    return timings, failure


def previous_timings(root: Path, profile: str) -> dict[str, float]:
    """Chapter times of the last build of the same profile (kept when ``--only`` reruns some chapters)."""
    status = root / "book" / "status.md"
    if not status.is_file() or f"`{profile}`" not in status.read_text():
        return {}
    rows = re.findall(r"^\| `([^`]+)` \| ([0-9.]+) \|$", status.read_text(), flags=re.M)
    return {name: float(seconds) for name, seconds in rows}


def start_order(names: list[str], previous: dict[str, float], typical: dict[str, float] | None = None) -> list[str]:
    """Longest first, so that no long chapter starts last while the other workers idle: by the
    ``previous`` build's times where known, else by the ``typical`` ones (a profile's :data:`TYPICAL`),
    the rest in order."""
    typical = typical or {}
    return sorted(names, key=lambda name: -previous.get(name, typical.get(name, 0.0)))


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def source_revision(root: Path) -> str:
    """The commit the book was built from (short hash, "+ uncommitted changes" where the tree differs from
    it), or a note that it is not a git checkout (:func:`attnpod.store.git_revision`)."""
    from attnpod.store import git_revision

    revision = git_revision(root)
    if revision is None:
        return "not a git checkout"
    commit, _, changes = revision.partition(" ")
    return f"commit `{commit}`" + (f" {changes}" if changes else "")


def write_status(root: Path, profile: str, timings: list[tuple[str, float]],
                 wall: tuple[float, int] | None = None) -> None:
    """The status page: profile, device, each chapter's time, and (``wall``) the whole run's wall time
    with the chapters run at a time."""
    import torch

    versions = {name: importlib.metadata.version(name) for name in
                ("attnpod", "torch", "numpy", "matplotlib", "jupyter-book", "papermill", "jupytext")}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    lines = [
        "# Build status", "",
        "Generated by `book/execute.py` when this book was built.", "",
        f"- **Profile:** `{profile}`",
        f"- **Device:** {device}",
        f"- **Built:** {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- **Python:** {platform.python_version()} on {platform.system()} {platform.machine()}",
        f"- **Code:** {source_revision(root)}", "",
        "| chapter | execution time (s) |", "|---|---:|",
        *[f"| `{name}` | {seconds:.1f} |" for name, seconds in timings],
        f"| **sum** | **{sum(s for _, s in timings):.1f}** |",
        *([f"| **wall time** ({wall[1]} at a time after the first) | **{wall[0]:.1f}** |"] if wall else []), "",
        "| package | version |", "|---|---|",
        *[f"| {name} | {version} |" for name, version in versions.items()], "",
    ]
    (root / "book" / "status.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None, help="smoke, laptop or paper (default: paper with CUDA, else laptop)")
    parser.add_argument("--root", type=Path, default=ROOT, help="book root (holds _toc.yml and notebooks/)")
    parser.add_argument("--only", default=None, help="run only chapters whose name contains this")
    parser.add_argument("-p", "--parameter", action="append", default=[], help="extra notebook parameter name=value")
    parser.add_argument("--jobs", type=int, default=None,
                        help="chapters run at a time after the first (default: 2 on a CPU with 2 or more cores, "
                             "else 1)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "src"))
    from attnpod.errors import AttnpodError
    from attnpod.store import artifacts_root
    from attnpod.config import get_profile

    every = chapters(args.root)
    names = [name for name in every if not args.only or args.only in name]
    try:
        profile = get_profile(args.profile).name  # fails fast on an unknown profile
        if not names:
            raise ValueError(f"--only {args.only!r} matches no chapter; the chapters: "
                             f"{', '.join(Path(n).name for n in every)}")
        given = dict(parse_parameter(p) for p in args.parameter)
        shares = chapter_parameters(args.root, names, given)
        # Every kernel runs in notebooks/: hand them the store as one absolute path.
        os.environ["ATTNPOD_ARTIFACTS"] = str(artifacts_root())
    except (AttnpodError, ValueError) as err:
        print(f"book/execute.py: {err}", file=sys.stderr)
        return 2
    cores = os.cpu_count() or 1
    jobs = args.jobs if args.jobs is not None else (1 if cuda_available() else min(2, cores))
    if jobs < 1:
        print(f"book/execute.py: --jobs must be at least 1, not {jobs}", file=sys.stderr)
        return 2
    parameters = {name: {"profile": profile, **shares[name]} for name in names}
    reruns = {name: rerun_command(name, profile, given) for name in names}
    previous = previous_timings(args.root, profile)
    rest = start_order([name for name in names if name != every[0]], previous, TYPICAL.get(profile))
    store = Path(os.environ["ATTNPOD_ARTIFACTS"])
    fresh = not store.is_dir() or not any(p for p in store.iterdir() if not p.name.startswith("."))
    start = time.perf_counter()
    timings, failure = [], None
    if every[0] in names:  # the models every other chapter reads: alone, with every core
        timings, failure = run_chapters(args.root, [every[0]], parameters, 1, None, reruns)
    if rest and not failure:
        at_once = min(jobs, len(rest))
        more, failure = run_chapters(args.root, rest, parameters, at_once,
                                     max(1, cores // at_once) if at_once > 1 else None, reruns)
        timings += more
    if failure:
        print(failure, file=sys.stderr)
        return 1
    wall = time.perf_counter() - start
    print(f"[{profile}] {len(timings)} chapters in {wall:.1f} s ({jobs} at a time after the first)", flush=True)
    merged = previous | dict(timings) if args.only else dict(timings)  # --only keeps the others' last times
    write_status(args.root, profile, [(name, merged[name]) for name in every if name in merged],
                 None if args.only else (wall, jobs))
    if not args.only and not given:  # a whole build at the profile's settings: a measurement for the table
        measured = write_measurement(args.root, profile, wall, fresh)
        print(f"[{profile}] measured: {measured['seconds']:.0f} s; to put it in the README's table: "
              f"python book/timings.py add {measured['file']}", flush=True)
    return 0


def memory_gib() -> float:
    """The machine's memory (GiB)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def folder_bytes(folder: Path) -> int:
    """What the files under ``folder`` hold (links not followed)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def write_measurement(root: Path, profile: str, wall: float, fresh: bool) -> dict:
    """``_build/measured-<profile>.json``: this build's wall time, the peak memory of its largest process
    (the kernels are its descendants, counted once they have ended) and the store it left (``fresh``: the
    build began with an empty one, else what the store holds is not this build's alone): a record for
    ``book/timings.py``."""
    import resource

    from attnpod.store import artifacts_root

    peak_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") if Path("/proc/cpuinfo").is_file() else open(os.devnull) as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    store = "fresh store" if fresh else "store reused"
    record = {"what": f"the {profile} book's chapters (`book/execute.py --profile {profile}`, {store})",
              "seconds": round(wall, 1), "peak_memory_bytes": peak_kib * 1024,
              **({"store_bytes": folder_bytes(artifacts_root())} if fresh else {}),
              "date": f"{datetime.date.today():%Y-%m-%d}",
              "machine": f"{os.cpu_count()}-core {names[0] if names else cpu}, {memory_gib():.0f} GiB",
              "code": source_revision(root)}
    out = root / "_build" / f"measured-{profile}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return {**record, "file": str(out)}


if __name__ == "__main__":
    sys.exit(main())
