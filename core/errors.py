"""The one base class of the errors a user can fix: a bad setting, blob storage that does not answer, input
that cannot be ingested, a bad request, an unknown model, ...

Each layer subclasses it for its own errors (ConfigError, StorageError, IngestError, ...). The CLI catches only
this class and prints the message as one line with exit code 1, so every message names the thing (file, blob,
setting, port) and the fix. Any other exception is a bug, and shows its traceback.
"""


class UserError(Exception):
    """Something the user can fix; the message says how."""
