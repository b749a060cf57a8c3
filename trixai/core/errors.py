"""One exception type for user-facing problems: the CLI prints its message alone, without a traceback."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf.errors import MissingMandatoryValue


class TrixaiError(Exception):
    """Bad input or configuration: the message names the culprit and what is allowed."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`TrixaiError` or a missing mandatory config value (also when wrapped by Hydra's
    instantiate) into one message on stderr and exit code 2."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - re-raised unless it is (or wraps) a TrixaiError
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, (TrixaiError, MissingMandatoryValue)):
            cause = cause.__cause__
        if cause is None:
            raise
        if isinstance(cause, MissingMandatoryValue):
            message = f"{cause.full_key} must be set (e.g. {cause.full_key}=...): the config leaves it '???'"
        else:
            message = str(cause)
        print(f"trixai: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
