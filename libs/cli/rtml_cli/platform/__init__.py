"""``rtml up`` / ``down`` / ``status``: the whole platform as supervised local processes.

:mod:`catalog` declares the services and derives their environment from the
local stack; :mod:`supervisor` runs them as children and restarts what dies
(:mod:`backoff`); :mod:`champion` makes sure a champion exists first;
:mod:`control` holds the logic of the three commands and :mod:`command` their
command-line options.
"""
