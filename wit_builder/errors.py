"""Errors the user can act on.

Every error that reaches the CLI is a `WitError`: it is printed as one clear line (no
traceback) and the command exits with status 2.
"""


class WitError(Exception):
    """Base class for errors caused by input, configuration or existing outputs."""


class InputError(WitError):
    """An input file is missing, unreadable, truncated or malformed beyond skipping."""


class ConfigError(WitError):
    """A configuration value is invalid."""


class OutputExistsError(WitError):
    """The output directory holds a finished run made with a different configuration."""


class Incomplete(InputError):
    """A resumable run stopped with finished pieces kept: the same command resumes."""
