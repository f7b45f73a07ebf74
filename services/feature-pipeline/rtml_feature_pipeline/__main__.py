"""``python -m rtml_feature_pipeline``: check the configuration, then stop honestly.

The service's logic is issue #3 and is not built yet. Rather than idle and
look healthy, this entry point validates everything the service will read from
the environment, so a mistyped value or variable name fails now, naming the
variable, with exit code 2; then it exits 78 (``EX_CONFIG``: not runnable as
configured) with a one-line notice, so an orchestrator sees a deliberate stop.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from rtml_common.config import env_names
from rtml_feature_pipeline import ISSUE, SERVICE_NAME
from rtml_feature_pipeline.config import ENV_PREFIX, SHARED_SETTINGS_USED, Settings

EXIT_BAD_CONFIG = 2
EXIT_NOT_IMPLEMENTED = 78


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Variables with this service's prefix that no setting reads (likely typos).

    pydantic-settings ignores them silently, so a misspelt name would leave the
    setting at its default without anyone noticing.
    """
    known = env_names(Settings)
    return sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )


def describe(error: ValidationError | SettingsError) -> str:
    """One line per problem, naming the environment variable and the field.

    The offending value is left out on purpose: it may be a secret (API keys).
    """
    if isinstance(error, SettingsError):
        # e.g. malformed JSON in a dict setting; the cause says what is wrong with it.
        return f"{error}: {error.__cause__}" if error.__cause__ else str(error)
    classes: tuple[type[BaseSettings], ...] = (Settings, *SHARED_SETTINGS_USED)
    owner = next((cls for cls in classes if cls.__name__ == error.title), None)
    prefix = str(owner.model_config.get("env_prefix", "")) if owner else ""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        problems.append(f"{(prefix + field).upper()} ({field}): {item['msg']}")
    return "; ".join(problems)


def main() -> int:
    """Validate the configuration from the environment; return the process exit code."""
    unknown = unknown_variables(os.environ)
    if unknown:
        print(
            f"{SERVICE_NAME}: invalid configuration: unknown variable(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(env_names(Settings)))}",
            file=sys.stderr,
        )
        return EXIT_BAD_CONFIG
    try:
        Settings()
        for settings_type in SHARED_SETTINGS_USED:
            settings_type()
    except (ValidationError, SettingsError) as error:
        print(f"{SERVICE_NAME}: invalid configuration: {describe(error)}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print(
        f"{SERVICE_NAME}: configuration is valid, but the service is not implemented yet "
        f"(issue #{ISSUE}); exiting with code {EXIT_NOT_IMPLEMENTED}",
        file=sys.stderr,
    )
    return EXIT_NOT_IMPLEMENTED


if __name__ == "__main__":
    sys.exit(main())
