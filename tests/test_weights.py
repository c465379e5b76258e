"""Weight files: lookup order, verification, and fetching from a local HTTP server (never the internet),
through :mod:`brgm.core.io.weights` and the ``brgm weights`` sub-commands."""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brgm.cli.weights import app
from brgm.core.errors import ConfigError, WeightsNotFoundError
from brgm.core.io.weights import (
    DownloadError,
    WeightsFile,
    brgm_home,
    default_path,
    fetch,
    find_weights,
    get_weights,
    registered_weights,
    verify,
)
from brgm.plugins.generators.checkpoints import save_generator
from brgm.plugins.generators.sources import RandomStyleGAN2

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: several download chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRGM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` serving ``tmp_path/served`` from a thread."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "net.pkl").write_bytes(PAYLOAD)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def spec(**changes: object) -> WeightsFile:
    values = {"name": "demo", "filename": "net.pkl", "size": len(PAYLOAD), "sha256": PAYLOAD_SHA, **changes}
    return WeightsFile(**values)  # type: ignore[arg-type]


def test_brgm_home_default_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BRGM_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert brgm_home() == tmp_path / "cache" / "brgm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert brgm_home() == Path.home() / ".cache" / "brgm"
    monkeypatch.setenv("BRGM_HOME", str(tmp_path / "mine"))
    assert default_path(spec()) == tmp_path / "mine" / "weights" / "net.pkl"


def test_lookup_order(home: Path, tmp_path: Path) -> None:
    explicit = tmp_path / "elsewhere.pkl"
    explicit.write_bytes(b"x")
    with pytest.raises(WeightsNotFoundError, match="run `brgm weights fetch demo`"):
        find_weights(spec(url="http://example.invalid/net.pkl"))
    with pytest.raises(WeightsNotFoundError, match="copy it there, or pass weights=PATH"):
        find_weights(spec())  # no URL: nothing to fetch
    default_path(spec()).parent.mkdir(parents=True)
    default_path(spec()).write_bytes(b"y")
    assert find_weights(spec()) == home / "weights" / "net.pkl"
    assert find_weights(spec(), explicit) == explicit
    with pytest.raises(WeightsNotFoundError, match=r"nothere\.pkl' given for 'demo' does not exist"):
        find_weights(spec(), tmp_path / "nothere.pkl")


def test_registered_weights_are_the_presets() -> None:
    known = registered_weights()
    assert {"stylegan2-ffhq", "stylegan2-xray", "stylegan2-brains"} <= set(known)
    assert get_weights("stylegan2-brains").filename == "brains.pkl"
    with pytest.raises(
        ConfigError, match="no published weights named 'stylegan2-xrya' \\(did you mean 'stylegan2-xray'"
    ):
        get_weights("stylegan2-xrya")


def test_checksum_is_compared_lowercase() -> None:
    assert spec(sha256=PAYLOAD_SHA.upper()).sha256 == PAYLOAD_SHA


def test_fetch_downloads_checks_and_reports_progress(home: Path, server: str) -> None:
    seen: list[tuple[int, int | None]] = []
    path = fetch(spec(), f"{server}/net.pkl", progress=lambda done, total: seen.append((done, total)))
    assert path == home / "weights" / "net.pkl" and path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) >= 2
    assert [p.name for p in path.parent.iterdir()] == ["net.pkl"]
    report = verify(spec(), path)
    assert report.ok and (report.size, report.sha256, report.size_ok, report.sha256_ok) == (
        len(PAYLOAD),
        PAYLOAD_SHA,
        True,
        True,
    )


@pytest.mark.parametrize(
    ("changes", "url", "message"),
    [
        (
            {"sha256": "0" * 64},
            "/net.pkl",
            f"checksum mismatch for net.pkl .*SHA-256 {PAYLOAD_SHA}, expected 0000",
        ),
        ({"size": 12}, "/net.pkl", f"sent {len(PAYLOAD)} bytes, but net.pkl has 12; nothing was saved"),
        ({}, "/missing.pkl", "failed: HTTP 404"),
    ],
)
def test_failed_fetches_leave_nothing_behind(
    home: Path, server: str, changes: dict, url: str, message: str
) -> None:
    old = default_path(spec())
    old.parent.mkdir(parents=True)
    old.write_bytes(b"previous")
    with pytest.raises(DownloadError, match=message):
        fetch(spec(**changes), server + url)
    assert [p.name for p in old.parent.iterdir()] == ["net.pkl"] and old.read_bytes() == b"previous"


def test_fetch_refuses_unreachable_and_odd_urls(home: Path) -> None:
    with pytest.raises(DownloadError, match="has no published URL; pass --url URL"):
        fetch(spec())
    with pytest.raises(DownloadError, match="scheme must be one of http, https, file"):
        fetch(spec(), "ftp://127.0.0.1/net.pkl")
    with pytest.raises(DownloadError, match=re.escape("fetching http://127.0.0.1:9/net.pkl failed")):
        fetch(spec(), "http://127.0.0.1:9/net.pkl", timeout=5)
    assert not (home / "weights").exists() or not any((home / "weights").iterdir())


def test_verify_reports_mismatches_and_unknowns(tmp_path: Path) -> None:
    path = tmp_path / "net.pkl"
    path.write_bytes(b"abc")
    report = verify(spec(), path)
    assert not report.ok and report.size_ok is False and report.sha256_ok is False
    unknown = verify(spec(size=None, sha256=None), path)
    assert unknown.ok and (unknown.size_ok, unknown.sha256_ok) == (None, None)
    assert unknown.sha256 == hashlib.sha256(b"abc").hexdigest()


# --------------------------------------------------------------------------- the CLI

runner = CliRunner()


def test_cli_list_and_path(home: Path) -> None:
    result = runner.invoke(app, ["list"], terminal_width=200)
    assert result.exit_code == 0
    for name, filename in (
        ("stylegan2-ffhq", "ffhq.pkl"),
        ("stylegan2-xray", "xray.pkl"),
        ("stylegan2-brains", "brains.pkl"),
    ):
        line = next(line for line in result.output.splitlines() if name in line)
        assert filename in line and " no " in line
    missing = runner.invoke(app, ["path", "stylegan2-brains"])
    assert missing.exit_code == 1 and "brgm weights fetch stylegan2-brains" in missing.output
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "brains.pkl").write_bytes(b"x")
    present = runner.invoke(app, ["path", "stylegan2-brains"])
    assert present.exit_code == 0 and present.output.strip() == str(home / "weights" / "brains.pkl")
    listed = runner.invoke(app, ["list"], terminal_width=200)
    assert " yes " in next(line for line in listed.output.splitlines() if "stylegan2-brains" in line)


def test_cli_unknown_name_exits_2_with_a_suggestion(home: Path) -> None:
    result = runner.invoke(app, ["path", "stylegan2-brain"])
    assert result.exit_code == 2 and "did you mean 'stylegan2-brains'" in result.output


def test_cli_fetch_and_verify(home: Path, server: str, tmp_path: Path) -> None:
    G = RandomStyleGAN2(resolution=256, z_dim=4, w_dim=4, mapping_layers=1, channel_max=2).load()
    save_generator(G, tmp_path / "served" / "brains.pkl")  # brgm's format under the published name
    result = runner.invoke(app, ["fetch", "stylegan2-brains", "--url", f"{server}/brains.pkl"])
    assert result.exit_code == 0, result.output
    saved = home / "weights" / "brains.pkl"
    assert saved.read_bytes() == (tmp_path / "served" / "brains.pkl").read_bytes()
    assert f"sha256 {hashlib.sha256(saved.read_bytes()).hexdigest()}" in result.output
    again = runner.invoke(app, ["fetch", "stylegan2-brains", "--url", f"{server}/brains.pkl"])
    assert again.exit_code == 0 and "already present" in again.output
    checked = runner.invoke(app, ["verify", "stylegan2-brains"])
    assert checked.exit_code == 0, checked.output
    assert (
        "sha256: no published value" in checked.output
        and "loads: 256×256, 1 channel(s), 14 ws of 4" in checked.output
    )


def test_cli_fetch_failure_exits_1(home: Path, server: str) -> None:
    result = runner.invoke(app, ["fetch", "stylegan2-xray", "--url", f"{server}/nothing.pkl"])
    assert result.exit_code == 1 and "HTTP 404" in result.output
    assert not (home / "weights").exists() or not any((home / "weights").iterdir())


def test_cli_verify_of_a_broken_file_exits_1(home: Path, tmp_path: Path) -> None:
    (tmp_path / "xray.pkl").write_bytes(b"\x80\x04garbage")
    result = runner.invoke(app, ["verify", "stylegan2-xray", "--weights", str(tmp_path / "xray.pkl")])
    assert result.exit_code == 1 and "truncated or corrupted" in result.output
