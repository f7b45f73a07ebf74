"""``python -m rtml_cli`` runs the ``rtml`` command (for tests and venv-less calls)."""

from rtml_cli.app import main

main()
