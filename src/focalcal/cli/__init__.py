"""The ``focalcal`` command line."""
