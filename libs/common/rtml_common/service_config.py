"""Start-up configuration check shared by the service entry points.

Every service reads its settings from ``RTML_<SERVICE>_*`` variables plus some
of the shared classes in :mod:`rtml_common.config`. Three things about that
are easy to get wrong, so they live here once instead of in each service:

* pydantic-settings silently ignores a variable no field reads, so a misspelt
  name (``RTML_SCORER_SHADOW_SAMPLE_PERCEN``) would leave the setting at its
  default without anyone noticing. :func:`unknown_variables` flags every
  variable with the service's prefix that no setting reads.
* A value may be a secret (API keys), so :func:`describe` names the variable,
  the field and what is wrong, and never the value.
* A service that is configured correctly but not built yet must not idle and
  look healthy. :func:`exit_not_implemented` exits with :data:`EXIT_BAD_CONFIG`
  (2) for a bad configuration and otherwise with :data:`EXIT_NOT_IMPLEMENTED`
  (78, ``EX_CONFIG`` from sysexits.h: not runnable as configured), so an
  orchestrator sees a deliberate stop rather than a crash or a hang.

>>> from pydantic_settings import SettingsConfigDict
>>> class DemoSettings(BaseSettings):
...     model_config = SettingsConfigDict(env_prefix="RTML_DEMO_", extra="forbid")
...     size: int = 1
>>> unknown_variables({"RTML_DEMO_SIZE": "2", "RTML_DEMO_SIZ": "2"}, "RTML_DEMO_", DemoSettings)
['RTML_DEMO_SIZ']
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from rtml_common.config import env_names

S = TypeVar("S", bound=BaseSettings)

#: Exit code for a configuration that does not validate (a usage error).
EXIT_BAD_CONFIG = 2
#: Exit code of a valid configuration whose service is not built yet (``EX_CONFIG``).
EXIT_NOT_IMPLEMENTED = 78


class ConfigError(Exception):
    """The configuration from the environment is invalid.

    The message is one line naming every offending variable, never its value.
    """


def unknown_variables(
    environ: Mapping[str, str], env_prefix: str, settings_type: type[BaseSettings]
) -> list[str]:
    """Variables starting with ``env_prefix`` that no setting of ``settings_type`` reads.

    Names are compared case-insensitively, as pydantic-settings reads them.
    Those it would ignore are returned sorted: they are most likely typos.
    """
    known = env_names(settings_type)
    prefix = env_prefix.upper()
    return sorted(
        name for name in environ if name.upper().startswith(prefix) and name.upper() not in known
    )


def describe(
    error: ValidationError | SettingsError, settings_classes: tuple[type[BaseSettings], ...]
) -> str:
    """One line per problem, naming the environment variable and the field.

    ``settings_classes`` are the classes that may have raised ``error``; the
    one it names supplies the variable prefix. The offending value is left out
    on purpose: it may be a secret.
    """
    if isinstance(error, SettingsError):
        # e.g. malformed JSON in a dict setting; the cause says what is wrong with it.
        return f"{error}: {error.__cause__}" if error.__cause__ else str(error)
    owner = next((cls for cls in settings_classes if cls.__name__ == error.title), None)
    prefix = str(owner.model_config.get("env_prefix", "")) if owner else ""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        problems.append(f"{(prefix + field).upper()} ({field}): {item['msg']}")
    return "; ".join(problems)


def load_settings(
    settings_type: type[S],
    shared: tuple[type[BaseSettings], ...],
    env_prefix: str,
    environ: Mapping[str, str] = os.environ,
) -> tuple[S, list[BaseSettings]]:
    """Validate a service's own settings and the shared ones it reads.

    ``environ`` is searched for unknown ``env_prefix`` variables; it should be
    the process environment, because that is what the settings classes
    themselves read. Returns the service's settings and one instance per
    class in ``shared``, in order. Raises :class:`ConfigError` for an unknown
    variable or a value that does not validate.
    """
    unknown = unknown_variables(environ, env_prefix, settings_type)
    if unknown:
        raise ConfigError(
            f"unknown variable(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(env_names(settings_type)))}"
        )
    try:
        settings = settings_type()
        shared_settings = [shared_type() for shared_type in shared]
    except (ValidationError, SettingsError) as error:
        raise ConfigError(describe(error, (settings_type, *shared))) from error
    return settings, shared_settings


def exit_not_implemented(
    service_name: str,
    issue: int,
    settings_type: type[BaseSettings],
    shared: tuple[type[BaseSettings], ...],
    env_prefix: str,
) -> int:
    """Entry point of a service not built yet: check its configuration, then stop.

    Returns the process exit code, after one line on stderr: :data:`EXIT_BAD_CONFIG`
    naming what is wrong, or :data:`EXIT_NOT_IMPLEMENTED` naming the issue
    that will build the service.
    """
    try:
        load_settings(settings_type, shared, env_prefix)
    except ConfigError as error:
        print(f"{service_name}: invalid configuration: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print(
        f"{service_name}: configuration is valid, but the service is not implemented yet "
        f"(issue #{issue}); exiting with code {EXIT_NOT_IMPLEMENTED}",
        file=sys.stderr,
    )
    return EXIT_NOT_IMPLEMENTED
