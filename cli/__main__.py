"""`python -m cli`: what the `places` launcher runs once the virtual environment is installed."""

from cli.main import main

main(prog_name="places")
