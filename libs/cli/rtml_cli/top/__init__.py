"""``rtml top``: a live terminal view of the running platform, read from Prometheus.

Only the services' exported metrics are read (through the Prometheus HTTP
API), never a service's private state: what ``top`` shows is what an operator
could alert on. :mod:`.queries` declares the PromQL per panel, :mod:`.client`
runs it, :mod:`.frame` gathers one frame, :mod:`.view` draws it and
:mod:`.command` is the typer command.
"""
