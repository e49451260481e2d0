"""The parts of ``scripts/demo.sh --ui`` that need no Airflow: its arguments, its folder, its port and
its login. The demo itself (start, UI, Ctrl-C, no orphans) is tested in ``tests/e2e/test_ui_demo.py``."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from airflow_provider_omnisend.testing.servers import LOOPBACK
from airflow_provider_omnisend.testing.ui_demo import DEMO_API_KEY, choose_port, connection_json, prepare_root

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_sh_refuses_an_unknown_option_before_setting_anything_up() -> None:
    demo = REPO_ROOT / "scripts" / "demo.sh"
    result = subprocess.run(["bash", str(demo), "--iu"], capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 2, result
    assert "bash scripts/demo.sh --ui" in result.stderr
    assert "setup:" not in result.stdout  # refused before scripts/setup.sh runs


def test_root_must_be_new_or_empty(tmp_path: Path) -> None:
    prepare_root(tmp_path / "new")
    assert (tmp_path / "new").is_dir()
    prepare_root(tmp_path / "new")  # empty: fine
    (tmp_path / "new" / "airflow.db").write_text("old runs")
    with pytest.raises(SystemExit, match="is not empty"):
        prepare_root(tmp_path / "new")


def test_a_busy_port_falls_back_to_a_free_one(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        port = choose_port(taken)
        assert port != taken and port > 0
        assert f"Port {taken} is in use" in capsys.readouterr().out
    assert choose_port(port) == port
    assert choose_port(0) > 0


def test_the_connection_points_at_the_emulator_with_privacy_acknowledged() -> None:
    conn = json.loads(connection_json("http://127.0.0.1:1234/api"))
    assert conn["host"] == "http://127.0.0.1:1234/api" and conn["password"] == DEMO_API_KEY
    assert conn["extra"]["privacy_acknowledged"] is True


def test_a_failed_start_is_a_message_and_exit_code_1_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from airflow_provider_omnisend.testing import ui_demo

    def broken_start(self):  # the emulator cannot start here: stands in for any start-up failure
        raise RuntimeError("emulator not healthy\n<its log>")

    monkeypatch.setattr(ui_demo.EmulatorServer, "start", broken_start)
    handlers = {sig: signal.getsignal(sig) for sig in ui_demo.SIGNALS}
    try:
        assert ui_demo.run(tmp_path / "demo", 0) == 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    out = capsys.readouterr().out
    assert "The demo could not start: emulator not healthy\n<its log>" in out
    assert f"Every log is in {tmp_path / 'demo' / 'logs'}" in out
