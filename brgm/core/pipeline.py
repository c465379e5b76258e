"""A run: inputs to measurements to reconstructions to files, item by item and resumable (``brgm.run``).

The stages, for each item of an :class:`~brgm.core.items.Source` list (read lazily, one batch in memory):

1. prepare: read the input, fit a clean image to the generator's grid and simulate its measurement (or take the
   input as the measurement), with the item's own seed (:func:`~brgm.core.items.item_seed`);
2. solve: items with measurements of one shape are reconstructed in batches of ``batch_size``;
3. write: each item's files appear atomically, then its record ``records/KEY.json`` (status, metrics, files,
   configuration hash, the fingerprint of its input and truth (:mod:`brgm.core.io.fingerprints`), timings);
4. assemble: ``metrics.json`` and ``failed.json`` are rebuilt from the records after every batch, and
   ``config.json`` (written first) describes the run.

Rerunning the same command skips the items whose record says done with the same configuration and fingerprint,
so a killed run loses only the batch in flight; an item whose input or truth changed since its record is redone
(and said so); ``overwrite=True`` redoes them all. A different configuration into the same output directory is
an error unless ``overwrite``. A bad input, or an item whose files cannot be written, becomes a ``failed``
record and the run goes on.

A run claims each item before it reads it (:mod:`brgm.core.claims`), so any number of runs of one command into
one output directory (shells, machines, Slurm jobs) share the items, each done once: an item claimed by another
live run is left to it, and waited for at the end (taken over if its claimant dies). An item whose record was
written since this run began, by another run, is settled, ``overwrite`` or not.

Over many processes (:mod:`brgm.core.distributed`) each worker runs its shard of the sorted items; every worker
lists the inputs before any writes (a barrier under torchrun); the lead (rank 0) assembles the run-level files
after a final barrier, and shows the progress of the whole run from the records in ``records/``. Without
torchrun (a Slurm job array) every task assembles when it ends, under a lock on ``records/.lock``, so the last
task to finish writes the complete files; :func:`merge` does the same from the records at any time. Each
record says which worker made it and when, and ``summary.json`` (assembled with ``metrics.json``) gives the time
per item and each worker's items, seconds, rate, device and peak memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from brgm.core import io
from brgm.core.calibration import Calibration
from brgm.core.claims import LEASE, Claims, locked
from brgm.core.distributed import Workers
from brgm.core.errors import BrgmError, ConfigError, DivergenceWarning, ShapeError
from brgm.core.io.files import write_json
from brgm.core.io.fingerprints import changes, recheck
from brgm.core.io.outputs import write_outputs
from brgm.core.items import Source, collect, item_seed
from brgm.core.params import check_seed
from brgm.core.problem import Problem
from brgm.core.reconstruct import reconstruct
from brgm.core.solver import Progress, Result

RECORDS = "records"
#: seconds between two counts of the records for the progress of a run
PROGRESS_INTERVAL = 2.0
#: seconds between two looks at the items that other runs hold
CLAIM_POLL = 1.0
INPUT_KINDS = ("auto", "image", "measurement")


@attrs.define(eq=False)
class Prepared:
    """One item ready to solve: its measurement ``[1, *measurement_shape]``, the meta its outputs are written with,
    the ground truth ``[1, C, *spatial]`` on the generator's grid (or None) and what was done to it."""

    source: Source
    seed: int
    measurement: torch.Tensor
    meta: io.Meta
    truth: torch.Tensor | None
    notes: list[str]
    seconds: float
    started_at: float


class Reporter:
    """What a run tells as it goes; the default says nothing (the CLI shows progress bars)."""

    def start(self, total: int, finished: int) -> None:
        """``total`` items, of which ``finished`` were done by an earlier run with this configuration."""

    def solving(self, keys: Sequence[str]) -> Progress | None:
        """A batch of ``keys`` starts: return a per-step callback for the solver (it is told the step count),
        or None."""
        return None

    def item(self, record: Mapping[str, Any]) -> None:
        """An item finished (``record["status"]`` is ``done`` or ``failed``)."""

    def cohort(self, tally: Tally, rate: float, eta: float | None) -> None:
        """Where the run's items stand, whichever run or worker does them (told to the lead every
        :data:`PROGRESS_INTERVAL` s and at the end): the ``tally``, ``rate`` items done per second since this
        run started, ``eta`` seconds left (None before the first item)."""


@attrs.frozen
class Tally:
    """How many of ``total`` items are done (a record of this configuration and fingerprint), failed (a failed
    record of this configuration), claimed (by a live run, without such a record) and stale (done, but the
    input or truth changed since, and not claimed)."""

    total: int
    done: int = 0
    failed: int = 0
    claimed: int = 0
    stale: int = 0


@attrs.frozen
class RunSummary:
    """The outcome of :func:`run`: the keys reconstructed and written now (not those that failed; ``redone``:
    those whose input or truth had changed since their record), the keys done before, the keys that other runs
    did meanwhile (``elsewhere``), and every failure and divergence in the output directory's records
    (``failed``: input -> error). :func:`merge` also gives the ``stale`` keys and those ``claimed`` by a live
    run."""

    out: Path
    solved: list[str]
    skipped: list[str]
    failed: dict[str, str]
    diverged: list[str]
    redone: list[str] = attrs.Factory(list)
    elsewhere: list[str] = attrs.Factory(list)
    stale: list[str] = attrs.Factory(list)
    claimed: list[str] = attrs.Factory(list)

    def exit_status(self, strict: bool = False) -> int:
        """1 when an item failed (or, with ``strict``, a solve diverged), else 0."""
        return int(bool(self.failed) or (strict and bool(self.diverged)))


def run(
    problem: Problem,
    inputs: Sequence[str | Path] | Mapping[str, np.ndarray | torch.Tensor],
    out: str | Path,
    *,
    truth: str | Path | None = None,
    input_kind: str = "auto",
    seed: int = 0,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    workers: Workers | None = None,
    lease: float = LEASE,
    calibration: Calibration | None = None,
    calibration_note: str = "",
) -> RunSummary:
    """Reconstruct every input of ``inputs`` into ``out`` (see the module docstring).

    Args:
        problem: the composed problem (its ``config`` is the run's configuration).
        inputs: files and directories (a directory of images is a batch, a directory of ``.dcm`` files one
            series), or named arrays ``{key: array}`` in brgm's array layout.
        out: the output directory (created).
        truth: the ground truth for metrics: a file, or a directory matched by file stem.
        input_kind: ``auto`` (a complex array, or one shaped like the measurement, is a measurement), ``image``
            (a clean image to corrupt) or ``measurement``.
        seed: the run seed; each item's randomness comes from it and the item's key.
        overwrite: redo finished items, and replace a run of another configuration in ``out``.
        reporter: progress callbacks.
        workers: this process's shard of a run over many processes (one process by default); see
            :mod:`brgm.core.distributed`.
        lease: seconds after which another run's claim that was not kept fresh is taken over
            (:mod:`brgm.core.claims`).
        calibration: factors on a sampler's std (:func:`brgm.core.io.calibrations.choose`), or None for the raw std;
            ``config.json`` records it (its factors and pairs, not its path: the same file installed elsewhere is
            the same run) or ``calibration_note`` (why there is none); every item's metrics record both.
    """
    if input_kind not in INPUT_KINDS:
        raise ConfigError(f"input_kind must be one of {', '.join(INPUT_KINDS)}, got {input_kind!r}")
    seed = check_seed(seed)
    reporter = reporter or Reporter()
    workers = workers or Workers()
    out = _output_directory(Path(out))
    config = {**problem.config, "seed": seed, "input_kind": input_kind, "truth": truth and str(truth)}
    if calibration is not None:  # what it is, not where it lies: runs on machines that share --out agree
        config["calibration"] = {k: v for k, v in calibration.describe().items() if k != "file"}
    elif calibration_note:
        config["calibration"] = {"note": calibration_note}
    if "device" in config:  # its kind: the ranks of one run use cuda:0, cuda:1, ... (said in the records)
        config["device"] = problem.device.type
    digest = config_hash(config)
    records = Records(out / RECORDS)
    with locked(records.directory / ".lock"):  # two runs started at once: the second sees the first's claim
        _claim(out, config, digest, overwrite)
    sources = collect(inputs, truth=None if truth is None else Path(truth), exclude=records.written_files())
    begun, earlier = records.stamps(), records.all()  # which records predate this run
    workers.barrier()  # every worker has listed the inputs and the records before any writes
    mine = workers.take(sources)
    by_key = {s.key: s for s in sources}
    prints = {s.key: s.fingerprint() for s in (sources if workers.lead else mine)}  # the lead tallies all
    finished: set[str] = set()
    stale: dict[str, list[str]] = {}  # key -> what changed since its record
    for source in mine:
        if (rec := earlier.get(source.key)) is not None and _done(rec, digest):
            if changed := changes(rec.get("fingerprint"), prints[source.key]):
                stale[source.key] = changed
            elif not overwrite:
                finished.add(source.key)
    reporter.start(len(mine), len(finished))
    worker = {
        "shard": workers.label,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "device": str(problem.device),
    }
    claims = Claims(records.directory, lease)
    solved: list[str] = []
    elsewhere: list[str] = []
    groups: dict[tuple[int, ...], list[Prepared]] = {}
    batch_size = problem.execution.batch_size

    def settled(key: str) -> bool:
        """Whether ``key`` needs nothing from this run: its record has this configuration and fingerprint, and
        says done (without ``overwrite``) or was written since this run began (by another run)."""
        stamp, rec = records.read(key)
        if rec is None or rec.get("config_hash") != digest or changes(rec.get("fingerprint"), prints[key]):
            return False
        return stamp != begun.get(key) or (rec.get("status") == "done" and not overwrite)

    def publish(record: dict[str, Any]) -> None:
        source = by_key[record["key"]]
        record = {**record, "fingerprint": prints[source.key], "paths": source.locations(), "worker": worker}
        records.write(record)
        claims.release(source.key)
        reporter.item(record)

    def flush(group: list[Prepared]) -> None:
        for record in _solve_and_write(problem, group, out, digest, reporter, calibration, calibration_note):
            publish(record)
            if record["status"] == "done":
                solved.append(record["key"])
        group.clear()
        if workers.lead:
            _assemble(out, records, digest)

    waiting = [s for s in mine if s.key not in finished]
    watch = _progress(records, claims, prints, digest, reporter) if workers.lead else nullcontext()
    with claims, watch:
        while waiting:
            held = []  # by other runs
            for source in waiting:
                if settled(source.key):
                    elsewhere.append(source.key)
                elif not claims.take(source.key):
                    held.append(source)
                elif settled(source.key):  # recorded by another run just before it released its claim
                    claims.release(source.key)
                    elsewhere.append(source.key)
                elif isinstance(
                    prepared := _prepare_or_record(source, problem, input_kind, seed, digest), dict
                ):
                    publish(prepared)
                else:
                    if changed := stale.get(source.key):
                        prepared.notes.append(
                            f"{source.label}: {' and '.join(changed)} changed since its record: redone"
                        )
                    group = groups.setdefault(tuple(prepared.measurement.shape), [])
                    group.append(prepared)
                    if len(group) == batch_size:
                        flush(group)
            for group in groups.values():
                if group:
                    flush(group)
            waiting = held
            if waiting:
                time.sleep(CLAIM_POLL)
        workers.barrier()  # every rank has written its records
    if workers.lead:
        failed, diverged = _assemble(out, records, digest)
    else:  # its own items; the lead tells about the run
        keys = {s.key for s in mine}
        failed, diverged = _outcome({k: r for k, r in _current(records, digest).items() if k in keys})
    return RunSummary(
        out=out,
        solved=solved,
        skipped=sorted(finished),
        failed=failed,
        diverged=diverged,
        redone=[key for key in solved if key in stale],
        elsewhere=sorted(elsewhere),
    )


def merge(out: str | Path) -> RunSummary:
    """Assemble the run-level files of ``out`` from its records (after a job array's tasks): the records made
    under the configuration of its ``config.json``, less the stale ones (done, but the input or truth they
    record changed or is gone since, each file hashed again), which it lists with the items that live runs
    claim."""
    out = Path(out)
    try:
        digest = json.loads((out / "config.json").read_text())["config_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{out} holds no brgm run (no readable config.json)") from None
    records = Records(out / RECORDS)
    claims = Claims(records.directory)
    current = _current(records, digest)
    stale = sorted(
        key
        for key, rec in current.items()
        if rec.get("status") == "done"
        and changes(rec.get("fingerprint"), recheck(rec.get("fingerprint"), rec.get("paths")))
    )
    failed, diverged = _assemble(out, records, digest, exclude=set(stale))
    done = [key for key, rec in current.items() if rec.get("status") == "done" and key not in stale]
    settled = {key for key in current if key not in stale}
    claimed = sorted(claims.live(key for key in claims.on_disk() if key not in settled))
    return RunSummary(
        out=out,
        solved=sorted(done),
        skipped=[],
        failed=failed,
        diverged=diverged,
        stale=stale,
        claimed=claimed,
    )


@contextmanager
def _progress(
    records: Records, claims: Claims, prints: Mapping[str, Mapping[str, Any]], digest: str, reporter: Reporter
) -> Iterator[None]:
    """Tell ``reporter.cohort`` where the items of ``prints`` (key -> fingerprint) stand (:class:`Tally`) every
    :data:`PROGRESS_INTERVAL` seconds (a thread that sleeps in between), and once more when it ends; a record is
    read again only when it changed."""
    read: dict[str, tuple[Any, str | None]] = {}  # key -> (stamp, state)
    start, stop = time.monotonic(), threading.Event()

    def tally() -> Tally:
        stamps = records.stamps()
        for key in prints:
            if key in stamps and read.get(key, (None,))[0] != stamps[key]:
                stamp, rec = records.read(key)
                read[key] = (stamp, _state(rec, digest, prints[key]))
            elif key not in stamps:
                read.pop(key, None)
        states = {key: read[key][1] if key in read else None for key in prints}
        settled = {key for key, state in states.items() if state in ("done", "failed")}
        claimed = claims.live(key for key in claims.on_disk() if key in prints and key not in settled)
        stale = sum(state == "stale" and key not in claimed for key, state in states.items())
        values = list(states.values())
        return Tally(len(prints), values.count("done"), values.count("failed"), len(claimed), stale)

    first = tally()

    def report() -> None:
        now = tally()
        rate = (now.done - first.done) / max(time.monotonic() - start, 1e-9)
        left = now.total - now.done - now.failed
        reporter.cohort(now, rate, left / rate if rate > 0 else None)

    def loop() -> None:
        while not stop.wait(PROGRESS_INTERVAL):
            report()

    thread = threading.Thread(target=loop, name="brgm-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    report()


def config_hash(config: Mapping[str, Any]) -> str:
    """A short SHA-256 of the configuration's canonical JSON: records made under it carry it."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Records:
    """The per-item records of an output directory: ``KEY.json`` each, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(exist_ok=True)

    def write(self, record: Mapping[str, Any]) -> None:
        write_json(self.directory / f"{record['key']}.json", record)

    def read(self, key: str) -> tuple[tuple[int, int] | None, dict[str, Any] | None]:
        """The :meth:`stamps` entry and the record of ``key`` (None, None when it has none or it is unreadable)."""
        path = self.directory / f"{key}.json"
        try:
            info = path.stat()
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None, None
        if not isinstance(record, dict) or record.get("key") != key:
            return None, None
        return (info.st_ino, info.st_mtime_ns), record

    def stamps(self) -> dict[str, tuple[int, int]]:
        """Each record file's inode and modification time by key: a record written anew has another stamp."""
        stamps = {}
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    info = entry.stat()
                    stamps[entry.name.removesuffix(".json")] = (info.st_ino, info.st_mtime_ns)
        return stamps

    def all(self) -> dict[str, dict[str, Any]]:
        """Every readable record by key (an unreadable one counts as not done)."""
        records = {}
        for path in sorted(self.directory.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("key") == path.stem:
                records[path.stem] = record
        return records

    def written_files(self) -> set[Path]:
        """Every file the records say brgm wrote (never taken as an input)."""
        return {
            (self.directory.parent / name).resolve()
            for record in self.all().values()
            for name in record.get("files", [])
        }


def _done(record: Mapping[str, Any], digest: str) -> bool:
    return record.get("status") == "done" and record.get("config_hash") == digest


def _state(record: Mapping[str, Any] | None, digest: str, fingerprint: Mapping[str, Any]) -> str | None:
    """``done`` (of this configuration and ``fingerprint``), ``stale`` (done, of another fingerprint),
    ``failed`` (of this configuration), or None."""
    if record is None or record.get("config_hash") != digest:
        return None
    if record.get("status") != "done":
        return "failed"
    return "stale" if changes(record.get("fingerprint"), dict(fingerprint)) else "done"


def _output_directory(out: Path) -> Path:
    """``out`` created, or a :class:`ConfigError` when it is a file or cannot be written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory for the outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".brgm-write-test-{time.monotonic_ns()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out {out} cannot be written: {err.strerror or err}") from None
    return out


def _claim(out: Path, config: dict[str, Any], digest: str, overwrite: bool) -> None:
    """Write ``config.json``, unless ``out`` holds a run of another configuration (and no ``overwrite``)."""
    path = out / "config.json"
    if path.exists() and not overwrite:
        try:
            earlier = json.loads(path.read_text()).get("config_hash")
        except (OSError, ValueError, AttributeError):
            earlier = None
        if earlier != digest:
            raise ConfigError(
                f"{out} holds the results of a run with another configuration ({path.name}); use another --out, "
                "or --overwrite to replace them"
            )
    write_json(path, {**config, "config_hash": digest})


def _record(prepared_or_source: Prepared | Source, digest: str, **fields: Any) -> dict[str, Any]:
    source = prepared_or_source.source if isinstance(prepared_or_source, Prepared) else prepared_or_source
    return {"key": source.key, "input": source.label, "config_hash": digest, **fields}


def _error_text(err: BaseException) -> str:
    """A one-line message: brgm's own errors as they are, anything else with its type."""
    text = " ".join(str(err).split())[:500]
    return text if isinstance(err, BrgmError) else f"{type(err).__name__}: {text}"


def _prepare_or_record(
    source: Source, problem: Problem, input_kind: str, run_seed: int, digest: str
) -> Prepared | dict[str, Any]:
    """The prepared item, or the record of its failure (any error: one input never stops the run)."""
    seed = item_seed(run_seed, source.key)
    try:
        return prepare(source, problem, input_kind, seed)
    except Exception as err:  # a bad input becomes its record, whatever it raised
        return _record(source, digest, status="failed", stage="prepare", seed=seed, error=_error_text(err))


def prepare(source: Source, problem: Problem, input_kind: str, seed: int) -> Prepared:
    """Read ``source`` and return its measurement (simulated with ``seed`` from a clean image when needed)."""
    start, started_at = time.perf_counter(), time.time()
    loaded = source.load()
    x, meta, notes = loaded.data, loaded.meta, []
    measurement_shape, image_shape = problem.measurement_shape, problem.image_shape
    is_measurement = input_kind == "measurement" or (
        input_kind == "auto"
        and (x.is_complex() or (tuple(x.shape[1:]) == measurement_shape and measurement_shape != image_shape))
    )
    clean = None
    if is_measurement:
        y = x
        notes.append(f"{source.label} is used as the measurement")
    else:
        if x.is_complex():
            raise ShapeError(
                f"{source.label}: a complex array cannot be a clean image; use --input-kind measurement"
            )
        clean, meta, report = io.fit_to_grid(x, image_shape[1:], meta, channels=image_shape[0])
        if report:
            notes.append(f"{source.label}: {report}")
        with torch.no_grad():
            y = problem.forward_model.simulate(clean.to(torch.float32), torch.Generator().manual_seed(seed))
        notes.append(
            f"{source.label} is a clean image: measurement simulated with fwd={problem.forward_model.name}, "
            f"seed {seed}"
        )
    io.check_writable(meta, image_shape)  # refused now rather than after the solve
    y = problem.check_measurement(y)
    truth = None
    if source.truth is not None:
        t = io.load(source.truth)
        truth, _, report = io.fit_to_grid(t.data, image_shape[1:], t.meta, channels=image_shape[0])
        if report:
            notes.append(f"truth {source.truth.name}: {report}")
    elif clean is not None:
        truth = clean
        notes.append(f"metrics compare with the clean input {source.label}")
    return Prepared(source, seed, y, meta, truth, notes, time.perf_counter() - start, started_at)


def _solve_and_write(
    problem: Problem,
    batch: list[Prepared],
    out: Path,
    digest: str,
    reporter: Reporter,
    calibration: Calibration | None = None,
    calibration_note: str = "",
) -> Iterable[dict[str, Any]]:
    """Reconstruct ``batch`` together and yield each item's record once its files are written."""
    y = torch.cat([item.measurement for item in batch])
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)  # recorded per item below
            progress = reporter.solving([item.source.key for item in batch])
            result = reconstruct(problem, y, seeds=[item.seed for item in batch], progress=progress)
    except BrgmError as err:
        for item in batch:
            yield _record(
                item, digest, status="failed", stage="solve", seed=item.seed, error=_error_text(err)
            )
        return
    solve_seconds = (time.perf_counter() - start) / len(batch)
    for index, item in enumerate(batch):
        yield _write_item(
            problem, result, index, item, out, digest, solve_seconds, calibration, calibration_note
        )


def _write_item(
    problem: Problem,
    result: Result,
    index: int,
    item: Prepared,
    out: Path,
    digest: str,
    solve_seconds: float,
    calibration: Calibration | None,
    calibration_note: str,
) -> dict[str, Any]:
    start = time.perf_counter()
    fields: dict[str, Any] = {"seed": item.seed, "notes": item.notes}
    try:
        written = write_outputs(
            out,
            name=item.source.key,
            problem=problem,
            measurement=item.measurement[0],
            result=result,
            index=index,
            meta=item.meta,
            truth=item.truth,
            calibration=calibration,
        )
    except Exception as err:  # a file that cannot be written fails this item only
        return _record(item, digest, status="failed", stage="write", error=_error_text(err), **fields)
    metrics: dict[str, Any] = {**written.metrics, "noise": _noise(problem, result, index, item.measurement)}
    if "uncertainty" in metrics and calibration_note:
        metrics["uncertainty"]["calibration_note"] = calibration_note
    if result.diverged[index]:
        total = result.history["total"][:, index]
        metrics["diverged"] = True
        metrics["warning"] = (
            f"the energy ended far above where it started ({total[0]:.4g} -> {total[-1]:.4g}): the solve "
            f"diverged; {problem.solver.divergence_advice()}"
        )
    timings = {
        "prepare_s": item.seconds,
        "solve_s": solve_seconds,
        "write_s": time.perf_counter() - start,
        "started_at": item.started_at,
        "finished_at": time.time(),
    }
    if problem.device.type == "cuda":
        timings["max_memory_bytes"] = torch.cuda.max_memory_allocated(problem.device)
    return _record(
        item,
        digest,
        status="done",
        metrics=metrics,
        files=[str(p.relative_to(out)) for p in written.files],
        timings=timings,
        **fields,
    )


def _noise(problem: Problem, result: Result, index: int, measurement: torch.Tensor) -> dict[str, Any]:
    """The noise level of item ``index``: ``sigma`` (:meth:`~brgm.core.problem.Problem.noise_level`), where it
    came from (``source``) and the floored level the data term used (``energy_sigma``)."""
    sigma = result.sigma[index : index + 1].to(measurement.device)
    return {
        "sigma": float(sigma),
        "source": problem.noise_source,
        "energy_sigma": float(problem.energy_sigma(measurement, sigma)),
    }


def _current(records: Records, digest: str) -> dict[str, dict[str, Any]]:
    return {key: rec for key, rec in records.all().items() if rec.get("config_hash") == digest}


def _outcome(current: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """The failures (input -> error) and the diverged keys among ``current`` records."""
    failed = {rec["input"]: rec.get("error", "") for rec in current.values() if rec.get("status") == "failed"}
    diverged = [
        key
        for key, rec in current.items()
        if rec.get("status") == "done" and rec.get("metrics", {}).get("diverged")
    ]
    return failed, diverged


def _assemble(
    out: Path, records: Records, digest: str, exclude: set[str] = frozenset()
) -> tuple[dict[str, str], list[str]]:
    """Rebuild ``metrics.json``, ``failed.json`` and ``summary.json`` from the records of this configuration but
    those of ``exclude`` (holding ``records/.lock``, so that the last of several writers reads every record);
    return the failures (input -> error) and the diverged keys."""
    with locked(records.directory / ".lock"):
        current = {k: r for k, r in _current(records, digest).items() if k not in exclude}
        metrics = {key: rec.get("metrics", {}) for key, rec in current.items() if rec.get("status") == "done"}
        failed, diverged = _outcome(current)
        write_json(out / "metrics.json", metrics)
        write_json(out / "failed.json", failed)
        write_json(out / "summary.json", summarise(current.values()))
    return failed, diverged


def summarise(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Time per item and each worker's share of the done ``records``: items, busy seconds (prepare, solve and
    write), wall seconds (first item's start to last item's end), items per wall second, device and, on CUDA,
    peak memory."""
    by_worker: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        if rec.get("status") == "done" and "started_at" in rec.get("timings", {}):
            by_worker.setdefault(rec.get("worker", {}).get("shard", "0/1"), []).append(rec)

    def totals(group: list[Mapping[str, Any]]) -> dict[str, Any]:
        busy = [sum(v for k, v in r["timings"].items() if k.endswith("_s")) for r in group]
        wall = max(r["timings"]["finished_at"] for r in group) - min(
            r["timings"]["started_at"] for r in group
        )
        memory = [r["timings"]["max_memory_bytes"] for r in group if "max_memory_bytes" in r["timings"]]
        return {
            "items": len(group),
            "busy_s": sum(busy),
            "seconds_per_item": sum(busy) / len(group),
            "wall_s": wall,
            "items_per_s": len(group) / wall if wall > 0 else None,
            **({"max_memory_bytes": max(memory)} if memory else {}),
        }

    every = [rec for group in by_worker.values() for rec in group]
    workers = {
        shard: {**totals(group), "devices": sorted({r.get("worker", {}).get("device", "?") for r in group})}
        for shard, group in sorted(by_worker.items())
    }
    return {**(totals(every) if every else {"items": 0}), "workers": workers}
