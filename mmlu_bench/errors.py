"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""


class UserError(Exception):
    """Bad input or environment: the message says what to do."""


class DataError(UserError):
    """The MMLU data is missing or malformed (the message names the file and line)."""


class ModelError(UserError):
    """The model cannot be found, loaded or accessed."""


class BackendError(UserError):
    """A backend or server cannot give what scoring needs."""


class ConfigError(UserError):
    """Unknown or contradictory settings."""
