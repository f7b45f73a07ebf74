"""rtml shadow-auditor: joins champion and shadow scores with late labels, audits, graduates.

Run it with ``python -m rtml_shadow_auditor``.
Settings: :mod:`rtml_shadow_auditor.config`; design: ``docs/shadow-auditor.md``.
"""

SERVICE_NAME = "rtml-shadow-auditor"
ISSUE = 7
