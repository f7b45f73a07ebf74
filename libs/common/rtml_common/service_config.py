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

Each service's own ``Settings`` subclasses :class:`ServiceSettings`, which
holds the configuration every one of them shares, and builds the fields that
several services have in common with the ``*_field`` factories below.

>>> from pydantic_settings import SettingsConfigDict
>>> class DemoSettings(BaseSettings):
...     model_config = SettingsConfigDict(env_prefix="RTML_DEMO_", extra="forbid")
...     size: int = 1
>>> unknown_variables({"RTML_DEMO_SIZE": "2", "RTML_DEMO_SIZ": "2"}, "RTML_DEMO_", DemoSettings)
['RTML_DEMO_SIZ']
"""

from __future__ import annotations

import hmac
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from rtml_common.config import env_names

S = TypeVar("S", bound=BaseSettings)

#: Exit code for a configuration that does not validate (a usage error).
EXIT_BAD_CONFIG = 2
#: Exit code of a valid configuration whose service is not built yet (``EX_CONFIG``).
EXIT_NOT_IMPLEMENTED = 78

#: The shared settings classes a service reads (its ``SHARED_SETTINGS_USED``).
SettingsClasses = tuple[type[BaseSettings], ...]

#: Shortest API key a service accepts: shorter keys are guessable, so an
#: operator who sets one must set a real one.
MIN_API_KEY_LENGTH = 16

#: The model the platform trains, scores and watches unless told otherwise.
DEFAULT_MODEL_NAME = "fraud-detector"


class ServiceSettings(BaseSettings):
    """Base of a service's own settings (``RTML_<SERVICE>_*``).

    Only what the service decides lives in its subclass. Kafka, Redis, MLflow,
    Cassandra and telemetry settings come from :mod:`rtml_common.config` (the
    service lists the classes it reads in ``SHARED_SETTINGS_USED``) so every
    service spells them the same way and docker-compose can be checked against
    one set of names.

    A subclass sets only its prefix; pydantic merges its ``model_config`` with
    this one. Unknown fields are refused, settings are immutable, and empty
    values count as unset so compose's ``${VAR:-}`` falls back to the default.

    >>> class DemoSettings(ServiceSettings):
    ...     model_config = SettingsConfigDict(env_prefix="RTML_DEMO_")
    ...     size: int = 1
    >>> {key: DemoSettings.model_config[key] for key in ("env_prefix", "extra", "frozen")}
    {'env_prefix': 'RTML_DEMO_', 'extra': 'forbid', 'frozen': True}
    >>> DemoSettings.model_config["env_ignore_empty"]
    True
    """

    model_config = SettingsConfigDict(extra="forbid", frozen=True, env_ignore_empty=True)


def http_host_field() -> Any:
    """The bind address of a service's HTTP API."""
    return Field(
        default="127.0.0.1",
        min_length=1,
        description="Bind address of the HTTP API (0.0.0.0 inside a container).",
    )


def http_port_field(default: int) -> Any:
    """The port of a service's HTTP API."""
    return Field(default=default, ge=1, le=65535, description="Port of the HTTP API.")


def model_name_field(description: str) -> Any:
    """The registered model a service works on; ``description`` says what for."""
    return Field(default=DEFAULT_MODEL_NAME, min_length=1, description=description)


def consumer_group_field(default: str, description: str) -> Any:
    """The Kafka consumer group of a consuming service."""
    return Field(default=default, min_length=1, description=description)


def check_api_key(key: SecretStr | None) -> SecretStr | None:
    """``key`` if unset or at least :data:`MIN_API_KEY_LENGTH` long, else ValueError.

    For a field validator: a short key is refused rather than protecting
    endpoints with it. The message never contains the key.
    """
    if key is not None and len(key.get_secret_value()) < MIN_API_KEY_LENGTH:
        raise ValueError(f"must be at least {MIN_API_KEY_LENGTH} characters (or unset)")
    return key


#: Request header carrying a service's API key (registry writes, decision admin).
API_KEY_HEADER = "X-API-Key"


class KeyRejected(Exception):
    """A request's API key was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def verify_api_key(expected: SecretStr | None, given: str | None, unset_detail: str) -> None:
    """Accept ``given`` only if it equals the configured key (constant-time).

    No key configured means the protected endpoints are *off* (403 with
    ``unset_detail``), never open; a missing or wrong key is a 401. One
    function so every service answers the same way.

    >>> verify_api_key(SecretStr("s" * 16), "s" * 16, "off")
    >>> try:
    ...     verify_api_key(None, "anything", "writes are off")
    ... except KeyRejected as rejected:
    ...     print(rejected.status, rejected.detail)
    403 writes are off
    """
    if expected is None:
        raise KeyRejected(403, unset_detail)
    if not given:
        raise KeyRejected(401, f"missing {API_KEY_HEADER} header")
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise KeyRejected(401, f"wrong {API_KEY_HEADER}")


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


def stop_on_signals(on_stop: Callable[[], None], logger: logging.Logger,
                    doing: str = "finishing the in-flight batch") -> None:
    """Make SIGTERM and SIGINT call ``on_stop`` (logged) instead of ending the process.

    Why: every service stops by finishing its batch, flushing its outputs and
    committing its offsets; dying on the signal would replay input on the
    next start. Call it from the main thread (Python's rule for handlers).
    """

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %s received: %s", signum, doing)
        on_stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
