"""The ``rtml`` command line: one entry point for the local platform."""
