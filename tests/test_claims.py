"""Claims on items: one holder at a time, taken over when the holder is gone or past its lease, kept fresh while
held; and identical commands into one --out sharing the items, each done once, a killed one's item taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from brgm.core.claims import LOCK, Claims
from brgm.core.errors import ConfigError
from tests.conftest import REPO
from tests.test_pipeline import TINY, image

# --- claims -------------------------------------------------------------------------------------------------


def stranger(directory: Path, lease: float = 600.0) -> Claims:
    """Claims of a run on another machine: it judges this machine's claims by their age only."""
    claims = Claims(directory, lease)
    claims.host = "another-machine"
    return claims


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_an_item_has_one_holder_until_it_is_released(tmp_path) -> None:
    a, b = Claims(tmp_path), Claims(tmp_path)
    assert a.take("x") and not b.take("x") and not a.take("x")
    claim = json.loads((tmp_path / "x.claim").read_text())
    assert (claim["host"], claim["pid"]) == (a.host, os.getpid()) and claim["started_at"] <= time.time()
    assert a.live(["x", "y"]) == b.live(["x", "y"]) == {"x"}
    b.release("x")  # not b's: nothing happens
    assert (tmp_path / "x.claim").exists()
    a.release("x")
    assert not (tmp_path / "x.claim").exists() and b.take("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK, "x.claim"]  # no temporary file left


def test_a_claim_whose_process_is_gone_is_taken_over_and_its_holder_keeps_no_hold(tmp_path) -> None:
    a, b = Claims(tmp_path), Claims(tmp_path)
    assert a.take("x")
    claim = json.loads((tmp_path / "x.claim").read_text())
    (tmp_path / "x.claim").write_text(json.dumps({**claim, "pid": dead_pid()}))
    assert b.live(["x"]) == set() and b.take("x")
    a.release("x")  # a's claim was taken over: b's stays
    assert json.loads((tmp_path / "x.claim").read_text())["token"] != claim["token"]


def test_a_claim_past_its_lease_is_taken_over_and_a_fresh_one_is_not(tmp_path) -> None:
    mine = Claims(tmp_path, lease=60)
    assert mine.take("old") and mine.take("new")
    past = time.time() - 61
    os.utime(tmp_path / "old.claim", (past, past))
    other = stranger(tmp_path, lease=60)
    assert other.live(["old", "new"]) == {"new"}
    assert other.take("old") and not other.take("new")


def test_a_held_claim_is_kept_fresh_and_released_at_the_end(tmp_path) -> None:
    with Claims(tmp_path, lease=0.4) as holder:
        assert holder.take("kept")
        idle = Claims(tmp_path, lease=0.4)
        assert idle.take("idle")  # held without being kept fresh
        time.sleep(1.0)
        other = stranger(tmp_path, lease=0.4)
        assert not other.take("kept") and other.take("idle")
    assert not (tmp_path / "kept.claim").exists()


def race(runs: list[Claims], key: str) -> list[bool]:
    """Each of ``runs`` takes ``key`` in its own thread, all at once: whether each won."""
    won = [False] * len(runs)
    together = threading.Barrier(len(runs))

    def take(index: int) -> None:
        together.wait()
        won[index] = runs[index].take(key)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(runs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won


def test_of_many_runs_taking_over_one_expired_claim_exactly_one_wins(tmp_path) -> None:
    for attempt in range(20):
        key = f"k{attempt}"
        (tmp_path / f"{key}.claim").write_text(
            json.dumps({"host": "h", "pid": 1, "started_at": 0, "token": "t"})
        )
        os.utime(tmp_path / f"{key}.claim", (0, 0))
        runs = [stranger(tmp_path) for _ in range(8)]
        won = race(runs, key)
        assert sorted(won) == [False] * 7 + [True], attempt
        holder = runs[won.index(True)]
        assert json.loads((tmp_path / f"{key}.claim").read_text())["token"] == holder._held[key]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LOCK, *(f"k{i}.claim" for i in range(20))])


def test_a_lease_must_be_positive_seconds(tmp_path) -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="lease must be a positive number of seconds"):
            Claims(tmp_path, lease=bad)


# --- identical commands into one --out ------------------------------------------------------------------------

#: ``brgm`` with the suite's plugin (its tiny generator) registered
BRGM = (
    "from brgm.core.plugins import pm; from tests.plugins import test_plugin; "
    "pm.register(test_plugin, name='tests.plugins.test_plugin'); from brgm.cli.app import main; main()"
)
#: the suite's plugin importable, and lines wide enough that every note stays on one line of the log
ENV = {
    **os.environ,
    "BRGM_DISABLE_PLUGIN_AUTOLOAD": "1",
    "COLUMNS": "300",
    "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
}


def start(folder: Path, out: Path) -> subprocess.Popen:
    args = [*TINY, "solver.batch_size=1", "-i", str(folder), "--out", str(out)]
    command = [sys.executable, "-c", BRGM, "compose", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)


def logs(processes: list[subprocess.Popen]) -> list[str]:
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * len(processes), outputs
    return outputs


def reconstructed(outputs: list[str], count: int) -> dict[str, int]:
    """How often each item was reconstructed, from the notes every run prints for each item it finishes."""
    return {
        f"s{i:02d}": sum(o.count(f"s{i:02d}.png is a clean image") for o in outputs) for i in range(count)
    }


EACH_ONCE = {f"s{i:02d}": 1 for i in range(12)}


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def assert_same_results(out: Path, expected: Path) -> None:
    reference = metrics(expected)
    assert set(metrics(out)) == set(reference) and len(reference) == 12
    for key, values in reference.items():
        assert abs(metrics(out)[key]["recon"]["psnr"] - values["recon"]["psnr"]) < 0.01, key
        assert metrics(out)[key]["baseline"] == values["baseline"], key


@pytest.mark.slow
def test_identical_commands_into_one_out_do_each_item_once_and_take_over_a_killed_ones(tmp_path) -> None:
    folder = tmp_path / "slices"
    for i in range(12):
        image(folder / f"s{i:02d}.png", i)
    (one,) = logs([start(folder, tmp_path / "one")])
    assert reconstructed([one], 12) == EACH_ONCE

    for runs in (2, 3):
        out = tmp_path / f"shared{runs}"
        outputs = logs([start(folder, out) for _ in range(runs)])
        assert reconstructed(outputs, 12) == EACH_ONCE, outputs
        wrote = [int(o.split("wrote ")[1].split(" ")[0]) for o in outputs]
        assert sum(wrote) == 12 and all(w >= 1 for w in wrote), wrote
        records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
        assert len(records) == 12 and all(r["status"] == "done" for r in records)
        assert len({r["worker"]["pid"] for r in records}) == runs
        assert not list((out / "records").glob("*.claim"))
        assert_same_results(out, tmp_path / "one")

    out = tmp_path / "killed"
    victim, survivor = start(folder, out), start(folder, out)
    deadline, held = time.monotonic() + 120, None
    while held is None and time.monotonic() < deadline:
        for path in (out / "records").glob("*.claim") if (out / "records").is_dir() else ():
            try:
                if json.loads(path.read_text())["pid"] == victim.pid:
                    held = path
            except (OSError, ValueError):
                continue
        time.sleep(0.01)
    assert held is not None, "the victim claimed no item"
    victim.send_signal(signal.SIGKILL)
    killed_log = victim.communicate()[0]
    key = held.name.removesuffix(".claim")
    assert json.loads(held.read_text())["pid"] == victim.pid  # killed mid-item: its claim is left behind
    (rest,) = logs([survivor])
    assert reconstructed([killed_log, rest], 12) == EACH_ONCE
    assert json.loads((out / "records" / f"{key}.json").read_text())["worker"]["pid"] == survivor.pid
    assert not list((out / "records").glob("*.claim"))
    assert_same_results(out, tmp_path / "one")
