"""`./places services`: start what is missing, stop exactly what was started, refuse a taken port."""

from __future__ import annotations

import socket
import subprocess

import pytest

from core import services
from core.config import apply
from tests.fixtures import free_port


def test_up_is_idempotent_and_status_shows_it(azurite):
    first = services.up(azurite, ["azurite"], report=lambda line: None)
    second = services.up(azurite, ["azurite"], report=lambda line: None)
    assert first[0].pid == second[0].pid
    assert services.status(azurite)[0]["state"] == "running"


@pytest.mark.services
def test_down_stops_exactly_the_recorded_process(tmp_path):
    config = apply(azurite_free_config(tmp_path), {})
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        record = services.up(config, ["azurite"], report=lambda line: None)[0]
        lines = []
        services.down(config, ["azurite"], report=lines.append)
        assert lines == [f"azurite  stopped  (pid {record.pid})"]
        assert not services.process_alive(record.pid)
        assert bystander.poll() is None
        assert services.status(config)[0]["state"] == "stopped"
    finally:
        bystander.kill()


@pytest.mark.services
def test_a_taken_port_gives_a_clear_error_not_a_hang(tmp_path):
    config = azurite_free_config(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", config.storage.emulator_port))
        squatter.listen()
        taken = r"port \d+ on 127.0.0.1 is already in use .*PLACES_STORAGE__EMULATOR_PORT"
        with pytest.raises(services.ServiceError, match=taken):
            services.up(config, ["azurite"], report=lambda line: None)


def test_unknown_service_is_named():
    with pytest.raises(services.ServiceError, match="unknown service nosuch; known: azurite, mlflow"):
        services.up(apply(services.Config(), {}), ["nosuch"])


def azurite_free_config(tmp_path):
    return apply(services.Config(), {"state_dir": str(tmp_path / "state"), "storage.emulator_port": str(free_port())})


def test_an_emulator_someone_else_runs_on_the_port_is_used_and_left_alone(azurite, tmp_path):
    other_checkout = apply(azurite, {"state_dir": str(tmp_path / "other-state")})
    lines = []
    assert services.up(other_checkout, ["azurite"], report=lines.append) == []
    assert "not started by ./places" in lines[0]
    services.down(other_checkout, ["azurite"], report=lines.append)
    assert lines[-1] == "azurite  was not running"
    assert services.status(azurite)[0]["state"] == "running"
