"""pytest set-up for the whole tree: tests/ and the *_test.py files beside the components share one
Azurite and one MLflow server per session (tests/fixtures.py); `--fast` runs only the tests that need neither
(tests/fast_tier.py)."""

pytest_plugins = ["tests.fixtures", "tests.fast_tier"]
