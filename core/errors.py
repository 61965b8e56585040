"""The project's error for mistakes a user can fix (a bad request, an unknown model, ...).

The CLI prints it as one line with exit code 1, like configuration and storage errors; the message says what
was wrong and what to do.
"""


class UserError(Exception):
    """Something the user can fix; the message says how."""
