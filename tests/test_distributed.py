"""A run over many processes: strided shards (every item exactly once), the workers of torchrun and Slurm job
arrays, torchrun ranks giving the outputs of one process, a killed rank resumed, and ``brgm merge``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from brgm.cli.app import app
from brgm.core.distributed import Workers, cpu_threads, from_environment, shard
from brgm.core.errors import ConfigError
from tests.test_pipeline import GEN, KSPACE, TINY, image

runner = CliRunner()


# --- shards -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", range(1, 10))
def test_every_item_goes_to_exactly_one_worker_and_shards_differ_by_at_most_one(workers: int) -> None:
    for count in range(1, 10):
        shards = [list(shard(count, index, workers)) for index in range(workers)]
        dealt = sorted(i for s in shards for i in s)
        assert dealt == list(range(count)), (count, workers)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        items = [f"k{i}" for i in range(count)]
        taken = [Workers(index=i, count=workers).take(items) for i in range(workers)]
        assert sorted(k for t in taken for k in t) == sorted(items)


def test_a_worker_index_outside_the_workers_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"0\.\.2"):
        shard(5, 3, 3)


def test_workers_come_from_torchrun_and_slurm_variables() -> None:
    assert from_environment({}) == Workers()
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert from_environment(torchrun) == Workers(1, 2, 1, 2, 1, 2)
    array = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert from_environment(array) == Workers(index=2, count=4)
    both = from_environment({**array, **torchrun})  # a job array whose tasks run torchrun
    assert (both.index, both.count, both.lead) == (5, 8, False)
    with pytest.raises(ConfigError, match="contiguous job array"):
        from_environment({**array, "SLURM_ARRAY_TASK_ID": "9"})
    with pytest.raises(ConfigError, match="RANK must be an integer"):
        from_environment({"RANK": "one"})


def test_cpu_threads_divide_the_cores_between_the_ranks_of_a_node() -> None:
    assert cpu_threads(Workers(local_world_size=2), cores=2) == 1
    assert cpu_threads(Workers(local_world_size=4), cores=16) == 4
    assert cpu_threads(Workers(local_world_size=4), cores=2) == 1


# --- a Slurm job array, and brgm merge ------------------------------------------------------------------------


def test_the_tasks_of_a_job_array_share_the_items_and_the_last_assembles(tmp_path, monkeypatch) -> None:
    for i in range(5):
        image(tmp_path / "in" / f"s{i}.png", i)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    args = ["compose", *TINY, "-i", str(tmp_path / "in"), "--out", str(out)]
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    first = runner.invoke(app, args)  # items 1, 3, 5 of broken, s0..s4
    assert first.exit_code == 0, first.output
    assert set(json.loads((out / "metrics.json").read_text())) == {"s0", "s2", "s4"}
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    last = runner.invoke(app, args)
    assert last.exit_code == 1 and "worker 0/2: wrote 2 reconstruction(s)" in last.output, last.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {f"s{i}" for i in range(5)}
    assert set(json.loads((out / "failed.json").read_text())) == {str(tmp_path / "in" / "broken.png")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == 5 and {w: s["items"] for w, s in summary["workers"].items()} == {
        "0/2": 2,
        "1/2": 3,
    }
    again = runner.invoke(app, args)
    assert "wrote 0 reconstruction(s)" in again.output and "already done" in again.output, again.output

    (out / "metrics.json").unlink()
    merged = runner.invoke(app, ["merge", str(out)])
    assert merged.exit_code == 1 and "5 item(s) done; 1 failed" in " ".join(merged.output.split())
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert runner.invoke(app, ["merge", str(tmp_path / "in")]).exit_code == 2


# --- torchrun: the outputs of one process; a killed rank resumed -------------------------------------------------

#: the bundled generator, a few steps
RUN = ["gen=demo-brain64", *KSPACE, "solver.steps=3", "solver.batch_size=1"]
ENV = {**os.environ, "BRGM_DISABLE_PLUGIN_AUTOLOAD": "1"}


def torchrun(*args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.Popen(
        [*command, "-m", "brgm", "compose", *RUN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )


def finished(process: subprocess.Popen, status: int = 0) -> str:
    output, _ = process.communicate(timeout=120)
    assert process.returncode == status, output
    return output


def assert_same_outputs(out: Path, expected: Path) -> None:
    metrics, reference = (json.loads((d / "metrics.json").read_text()) for d in (out, expected))
    assert set(metrics) == set(reference) and len(reference) == 8
    for key, values in reference.items():
        assert abs(metrics[key]["recon"]["psnr"] - values["recon"]["psnr"]) < 0.01, key
        assert metrics[key]["baseline"] == values["baseline"], key
        np.testing.assert_array_equal(
            np.load(out / f"{key}_measurement.npy"), np.load(expected / f"{key}_measurement.npy")
        )


def test_torchrun_ranks_give_the_outputs_of_one_process_and_a_killed_rank_resumes(tmp_path) -> None:
    folder = tmp_path / "slices"
    for i in range(8):
        image(folder / f"s{i}.png", i, size=64)
    threads = str(cpu_threads(Workers(local_world_size=2), cores=len(os.sched_getaffinity(0))))
    one = subprocess.run(
        [sys.executable, "-m", "brgm", "compose", *RUN, "-i", str(folder), "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env={**ENV, "OMP_NUM_THREADS": threads},
        timeout=120,
    )
    assert one.returncode == 0, one.stderr

    output = finished(torchrun("-i", str(folder), "--out", str(tmp_path / "two")))
    assert "all workers" in output and "8/8" in output, output
    assert_same_outputs(tmp_path / "two", tmp_path / "one")
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert {w: s["items"] for w, s in summary["workers"].items()} == {"0/2": 4, "1/2": 4}

    killed = tmp_path / "killed"
    process = torchrun("-i", str(folder), "--out", str(killed))
    deadline, victim = time.monotonic() + 60, None
    while victim is None and time.monotonic() < deadline:
        for path in (killed / "records").glob("*.json"):
            record = json.loads(path.read_text())
            if record["worker"]["shard"] == "1/2":
                victim = record["worker"]["pid"]
        time.sleep(0.01)
    assert victim is not None, "rank 1 finished no item"
    os.kill(victim, signal.SIGKILL)
    finished(process, status=1)
    before = {p.name: p.stat().st_mtime_ns for p in (killed / "records").glob("*.json")}
    assert 1 <= len(before) < 8, f"{len(before)} items were done when rank 1 was killed"

    launched = runner.invoke(app, ["compose", *RUN, "-i", str(folder), "--out", str(killed), "--launch", "2"])
    assert launched.exit_code == 0, launched.output
    after = {p.name: p.stat().st_mtime_ns for p in (killed / "records").glob("*.json")}
    assert len(after) == 8 and all(after[name] == mtime for name, mtime in before.items())
    assert_same_outputs(killed, tmp_path / "one")


def test_two_runs_of_other_configurations_started_at_once_into_one_out_cannot_both_claim_it(tmp_path) -> None:
    folder = tmp_path / "slices"
    for i in range(2):
        image(folder / f"s{i}.png", i, size=64)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "brgm", "compose", *GEN, *KSPACE, "-i", str(folder), "--out", str(out)]
    runs = [
        subprocess.Popen(
            [*command, f"solver.steps={steps}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
        )
        for steps in (2, 3)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert sorted(run.returncode for run in runs) == [0, 2], outputs
    digest = json.loads((out / "config.json").read_text())["config_hash"]
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert len(records) == 2 and all(r["config_hash"] == digest and r["status"] == "done" for r in records)
    assert set(json.loads((out / "metrics.json").read_text())) == {"s0", "s1"}
