"""`./places test --fast` (pytest's `--fast`): only the tests that need no service, for a quick check of a change.

A test is left out of the fast tier (deselected, not failed) when it
- is marked `slow` (a whole Beam job or pipeline),
- is marked `services` (it starts a service itself, or reaches one through request.getfixturevalue, which
  collection cannot see), or
- uses a fixture that starts a service (SERVICE_FIXTURES), directly or through other fixtures.

A test file whose module-level `pytestmark` is slow or services is not even imported: its imports (TFX, the
serving stack) would cost more than the whole fast tier runs.

What slips through anyway fails instead of starting the service: in fast mode a service fixture and
services.start (which Azurite, the MLflow server and the Flink cluster's processes all start through) fail the test
and name the marker to add. A subprocess that runs `./places services up` is not seen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core import services

FAST_OPTION = "--fast"
# The fixtures of tests/fixtures.py that start Azurite (Node) and the MLflow server; every other fixture that needs
# a service (the Flink cluster's, a registered champion) is built on them.
SERVICE_FIXTURES = frozenset({"azurite", "mlflow_server"})
_SERVICES_MARKER = ("services: starts a local service itself or reaches one without the fixtures of tests/fixtures.py; "
                    f"`{FAST_OPTION}` leaves it out")
_LEFT_OUT_MARKS = frozenset({"slow", "services"})
_ADVICE = "mark the test @pytest.mark.services (or slow) so the fast tier leaves it out"


def pytest_addoption(parser) -> None:
    parser.addoption(FAST_OPTION, action="store_true",
                     help="run only the tests that need no service (no Azurite, MLflow server or Flink cluster) "
                          "and are not marked slow")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", _SERVICES_MARKER)


def is_fast(config) -> bool:
    return bool(config.getoption(FAST_OPTION))


def needs_a_service(item) -> bool:
    """Whether `item` is left out of the fast tier."""
    marked = item.get_closest_marker("slow") or item.get_closest_marker("services")
    return bool(marked) or not SERVICE_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def marks_the_whole_module_left_out(source: str) -> bool:
    """Whether a test file's module-level `pytestmark` (a mark or a list of marks) includes slow or services."""
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "pytestmark" for target in statement.targets):
            marks = statement.value.elts if isinstance(statement.value, (ast.List, ast.Tuple)) else [statement.value]
            return any(isinstance(mark, ast.Attribute) and mark.attr in _LEFT_OUT_MARKS for mark in marks)
    return False


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    if is_fast(config) and collection_path.suffix == ".py" and collection_path.is_file():
        if marks_the_whole_module_left_out(collection_path.read_text()):
            return True
    return None


def pytest_collection_modifyitems(config, items) -> None:
    if not is_fast(config):
        return
    left_out = [item for item in items if needs_a_service(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not needs_a_service(item)]


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef, request):
    if is_fast(request.config) and fixturedef.argname in SERVICE_FIXTURES:
        pytest.fail(f"{FAST_OPTION}: the test needs the fixture {fixturedef.argname!r}, which starts a service; "
                    f"{_ADVICE}", pytrace=False)


@pytest.fixture(autouse=True)
def _no_service_starts_in_the_fast_tier(request, monkeypatch):
    if not is_fast(request.config):
        return

    def refuse(what: str):
        def refused(*args, **kwargs):
            pytest.fail(f"{FAST_OPTION}: the test starts {what}; {_ADVICE}", pytrace=False)
        return refused

    monkeypatch.setattr(services, "start", refuse("a local service (services.start)"))
