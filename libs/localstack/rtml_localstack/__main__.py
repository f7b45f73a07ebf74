"""``python -m rtml_localstack up|down|status|env``."""

from rtml_localstack.cli import app

app()
