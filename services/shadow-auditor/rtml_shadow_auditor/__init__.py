"""rtml shadow-auditor: shadow model auditing and graduation (issue #7; not implemented yet).

Run it with ``python -m rtml_shadow_auditor``.
Settings: :mod:`rtml_shadow_auditor.config`.
"""

SERVICE_NAME = "rtml-shadow-auditor"
ISSUE = 7
