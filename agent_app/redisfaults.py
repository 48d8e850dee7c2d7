"""Redis refusing this service's credentials, told apart from Redis being unreachable.

An outage passes and clients may retry; refused credentials (a wrong
`AGENT_REDIS_PASSWORD`, or an ACL that denies the service) stay refused until an operator
acts, so they are reported as such: in `/ready`, in error answers, and in the log once."""

from __future__ import annotations

from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from agent_app.logging import get_logger

log = get_logger(__name__)

_AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")
AUTH_PROBLEM = "redis refused this service's credentials (check AGENT_REDIS_PASSWORD)"


def is_auth_failure(exc: BaseException) -> bool:
    if isinstance(exc, AuthenticationError | NoPermissionError):
        return True
    # redis-py maps the common replies to the classes above; older servers' and proxies'
    # wordings come as plain error replies.
    return isinstance(exc, ResponseError) and str(exc).startswith(_AUTH_REPLIES)


def describe(exc: BaseException) -> str:
    """The problem as `/ready` lists it (exception types only: messages may echo input)."""
    if is_auth_failure(exc):
        return f"{AUTH_PROBLEM}: {type(exc).__name__}"
    return f"redis unreachable: {type(exc).__name__}"


class RedisFaults:
    """Logs refused credentials once, not on every request or poll that meets them, and
    once more when Redis accepts them again."""

    def __init__(self) -> None:
        self._refused = False

    def failed(self, exc: BaseException) -> bool:
        """True if `exc` is a refusal of the credentials (logged the first time)."""
        if not is_auth_failure(exc):
            return False
        if not self._refused:
            self._refused = True
            log.error(
                "redis refused the credentials; not a transient failure: an operator must "
                "fix AGENT_REDIS_PASSWORD or the Redis user's permissions",
                error=type(exc).__name__,
            )
        return True

    def succeeded(self) -> None:
        if self._refused:
            self._refused = False
            log.info("redis accepts the credentials again")
