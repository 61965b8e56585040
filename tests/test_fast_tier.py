"""`./places test --fast` (tests/fast_tier.py) leaves out every test that needs a service and never starts one: a
small test file, one test per way of needing a service, runs in a pytest inside this one."""

from __future__ import annotations

import textwrap

pytest_plugins = ["pytester"]

# Tests that say by a mark what they need.
_MARKED = """
    @pytest.mark.slow
    def test_marked_slow():
        pass


    @pytest.mark.services
    def test_marked_services():
        pass
"""

_NEEDS_EVERY_WAY = textwrap.dedent('''
    import pytest

    from core import services
    from core.config import Config, apply
    from tests.fixtures import free_port


    def test_a_plain_unit_test():
        pass


    def test_uses_azurite(azurite):
        pass


    @pytest.fixture
    def blob_root(container):
        return container + "/root"


    def test_uses_storage_through_another_fixture(blob_root):
        pass


''' + _MARKED + '''


    def test_asks_for_azurite_at_run_time(request):
        request.getfixturevalue("azurite")


    def test_starts_azurite_itself(tmp_path):
        config = apply(Config(), {"state_dir": str(tmp_path), "storage.emulator_port": str(free_port())})
        services.up(config, ["azurite"], report=lambda line: None)
''')


def _with_the_fast_tier(pytester, monkeypatch) -> None:
    # Each in-process run would import the installed plugins (schemathesis, hypothesis) afresh, seconds a run:
    # these runs need none of them.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest('pytest_plugins = ["tests.fixtures", "tests.fast_tier"]')
    pytester.makeini("[pytest]\naddopts = --strict-markers\nmarkers =\n    slow: a whole Beam job or pipeline\n")


def test_fast_mode_deselects_what_needs_a_service_and_fails_what_would_start_one(pytester, monkeypatch):
    _with_the_fast_tier(pytester, monkeypatch)
    pytester.makepyfile(test_needs=_NEEDS_EVERY_WAY)

    result = pytester.runpytest("--fast", "-rf")

    result.assert_outcomes(passed=1, failed=2, deselected=4)
    result.stdout.fnmatch_lines([
        "--fast: the test needs the fixture 'azurite', which starts a service; mark the test *",
        "--fast: the test starts a local service (services.start); mark the test *",
    ])


def test_without_fast_mode_the_marks_leave_nothing_out(pytester, monkeypatch):
    _with_the_fast_tier(pytester, monkeypatch)
    pytester.makepyfile(test_needs="import pytest\n\n" + textwrap.dedent(_MARKED))

    pytester.runpytest().assert_outcomes(passed=2)


def test_a_file_left_out_as_a_whole_is_not_even_imported_in_fast_mode(pytester, monkeypatch):
    _with_the_fast_tier(pytester, monkeypatch)
    pytester.makepyfile(
        test_heavy="import pytest\nimport a_module_this_machine_lacks\n\npytestmark = [pytest.mark.slow]\n\n\n"
                   "def test_heavy():\n    pass\n",
        test_light="def test_light():\n    pass\n")

    pytester.runpytest("--fast").assert_outcomes(passed=1)
    pytester.runpytest().assert_outcomes(errors=1)
