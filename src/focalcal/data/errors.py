"""The error raised for missing, unreadable or misnamed data (defined in :mod:`focalcal.errors`)."""

from ..errors import DataError

__all__ = ["DataError"]
