"""``python -m rtml_cli.traffic``: the live traffic source (see :mod:`.command`)."""

from rtml_cli.traffic.command import app

app(prog_name="python -m rtml_cli.traffic")
