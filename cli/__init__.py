"""The command line, `./places`: the top layer, above everything it drives (see the README's "Layout").

`cli/main.py` holds the click commands; `python -m cli` (what `./places` runs) starts them.
"""
