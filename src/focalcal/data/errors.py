"""The error raised for missing or unreadable data; the CLI prints its message without a traceback."""


class DataError(ValueError):
    """Data is missing, unreadable or inconsistent. The message names the problem and the fix."""
