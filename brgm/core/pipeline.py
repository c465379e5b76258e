"""A run: inputs to measurements to reconstructions to files, item by item and resumable (``brgm.run``).

The stages, for each item of an :class:`~brgm.core.items.Source` list (read lazily, one batch in memory):

1. prepare: read the input, fit a clean image to the generator's grid and simulate its measurement (or take the
   input as the measurement), with the item's own seed (:func:`~brgm.core.items.item_seed`);
2. solve: items with measurements of one shape are reconstructed in batches of ``batch_size``;
3. write: each item's files appear atomically, then its record ``records/KEY.json`` (status, metrics, files,
   configuration hash, timings);
4. assemble: ``metrics.json`` and ``failed.json`` are rebuilt from the records after every batch, and
   ``config.json`` (written first) describes the run.

Rerunning the same command skips the items whose record says done with the same configuration, so a killed run
loses only the batch in flight; ``overwrite=True`` redoes them. A different configuration into the same output
directory is an error unless ``overwrite``. A bad input, or an item whose files cannot be written, becomes a
``failed`` record and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from brgm.core import io
from brgm.core.errors import BrgmError, ConfigError, DivergenceWarning, ShapeError
from brgm.core.io.files import write_json
from brgm.core.io.outputs import write_outputs
from brgm.core.items import Source, collect, item_seed
from brgm.core.params import check_seed
from brgm.core.problem import Problem
from brgm.core.solver import Progress, Result, reconstruct

RECORDS = "records"
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


@attrs.frozen
class RunSummary:
    """The outcome of :func:`run`: the keys solved now, the keys done before, and every failure and divergence
    in the output directory's records (``failed``: input -> error)."""

    out: Path
    solved: list[str]
    skipped: list[str]
    failed: dict[str, str]
    diverged: list[str]

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
    """
    if input_kind not in INPUT_KINDS:
        raise ConfigError(f"input_kind must be one of {', '.join(INPUT_KINDS)}, got {input_kind!r}")
    seed = check_seed(seed)
    reporter = reporter or Reporter()
    out = _output_directory(Path(out))
    config = {**problem.config, "seed": seed, "input_kind": input_kind, "truth": truth and str(truth)}
    digest = config_hash(config)
    _claim(out, config, digest, overwrite)
    records = Records(out / RECORDS)
    sources = collect(inputs, truth=None if truth is None else Path(truth), exclude=records.written_files())
    finished = set() if overwrite else {key for key, rec in records.all().items() if _done(rec, digest)}
    todo = [s for s in sources if s.key not in finished]
    reporter.start(len(sources), len(sources) - len(todo))
    solved: list[str] = []
    groups: dict[tuple[int, ...], list[Prepared]] = {}
    batch_size = problem.execution.batch_size

    def flush(group: list[Prepared]) -> None:
        for record in _solve_and_write(problem, group, out, digest, reporter):
            records.write(record)
            reporter.item(record)
            solved.append(record["key"])
        group.clear()
        _assemble(out, records, digest)

    for source in todo:
        prepared = _prepare_or_record(source, problem, input_kind, seed, digest, records, reporter)
        if prepared is None:
            continue
        group = groups.setdefault(tuple(prepared.measurement.shape), [])
        group.append(prepared)
        if len(group) == batch_size:
            flush(group)
    for group in groups.values():
        if group:
            flush(group)
    failed, diverged = _assemble(out, records, digest)
    return RunSummary(
        out=out,
        solved=solved,
        skipped=sorted(finished & {s.key for s in sources}),
        failed=failed,
        diverged=diverged,
    )


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
    source: Source,
    problem: Problem,
    input_kind: str,
    run_seed: int,
    digest: str,
    records: Records,
    reporter: Reporter,
) -> Prepared | None:
    """The prepared item, or None after recording its failure (any error: one input never stops the run)."""
    seed = item_seed(run_seed, source.key)
    try:
        return prepare(source, problem, input_kind, seed)
    except Exception as err:  # a bad input becomes its record, whatever it raised
        record = _record(source, digest, status="failed", stage="prepare", seed=seed, error=_error_text(err))
        records.write(record)
        reporter.item(record)
        return None


def prepare(source: Source, problem: Problem, input_kind: str, seed: int) -> Prepared:
    """Read ``source`` and return its measurement (simulated with ``seed`` from a clean image when needed)."""
    start = time.perf_counter()
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
    return Prepared(source, seed, y, meta, truth, notes, time.perf_counter() - start)


def _solve_and_write(
    problem: Problem, batch: list[Prepared], out: Path, digest: str, reporter: Reporter
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
        yield _write_item(problem, result, index, item, out, digest, solve_seconds)


def _write_item(
    problem: Problem, result: Result, index: int, item: Prepared, out: Path, digest: str, solve_seconds: float
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
        )
    except Exception as err:  # a file that cannot be written fails this item only
        return _record(item, digest, status="failed", stage="write", error=_error_text(err), **fields)
    metrics: dict[str, Any] = dict(written.metrics)
    if result.diverged[index]:
        total = result.history["total"][:, index]
        metrics["diverged"] = True
        metrics["warning"] = (
            f"the energy ended far above where it started ({total[0]:.4g} -> {total[-1]:.4g}): the solve "
            f"diverged; {problem.solver.divergence_advice()}"
        )
    timings = {"prepare_s": item.seconds, "solve_s": solve_seconds, "write_s": time.perf_counter() - start}
    return _record(
        item,
        digest,
        status="done",
        metrics=metrics,
        files=[str(p.relative_to(out)) for p in written.files],
        timings=timings,
        **fields,
    )


def _assemble(out: Path, records: Records, digest: str) -> tuple[dict[str, str], list[str]]:
    """Rebuild ``metrics.json`` and ``failed.json`` from the records of this configuration; return the failures
    (input -> error) and the diverged keys."""
    current = {key: rec for key, rec in records.all().items() if rec.get("config_hash") == digest}
    metrics = {key: rec.get("metrics", {}) for key, rec in current.items() if rec.get("status") == "done"}
    failed = {rec["input"]: rec.get("error", "") for rec in current.values() if rec.get("status") == "failed"}
    write_json(out / "metrics.json", metrics)
    write_json(out / "failed.json", failed)
    return failed, [key for key, m in metrics.items() if m.get("diverged")]
