"""Turn botocore exceptions into one clear line (and a kind to count), never showing secrets.

Classification goes by exception class name and error code so this module does not import
botocore itself (a host-only agent never loads it).
"""

from __future__ import annotations

from typing import Any, Literal

ErrorKind = Literal[
    "no_credentials",
    "expired_credentials",
    "rejected_credentials",
    "access_denied",
    "unreachable",
    "throttled",
    "profile_not_found",
    "other",
]

_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}
_UNREACHABLE = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ProxyConnectionError",
    "SSLError",
}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
_REJECTED = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AuthFailure",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSignatureException",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "OptInRequired"}
_THROTTLED = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"}

CHAIN = "environment, shared credentials/config files or profile, container or instance role"


class CloudError(Exception):
    """A cloud call failed; the message is safe to log and show (no credentials in it)."""

    def __init__(self, message: str, kind: ErrorKind = "other") -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def explain(exc: BaseException, *, where: str = "") -> CloudError:
    """One safe, human line for a botocore/aiohttp failure, prefixed by `where` (e.g. region)."""
    prefix = f"{where}: " if where else ""
    names = _class_names(exc)
    if isinstance(exc, CloudError):
        return CloudError(prefix + str(exc), exc.kind)
    if names & _NO_CREDENTIALS:
        return CloudError(
            f"{prefix}no AWS credentials found (looked in: {CHAIN})", "no_credentials"
        )
    if "ProfileNotFound" in names:
        kwargs: dict[str, Any] = getattr(exc, "kwargs", {})
        profile = kwargs.get("profile", "?")
        return CloudError(f"{prefix}AWS profile {profile!r} not found", "profile_not_found")
    if names & _UNREACHABLE:
        kwargs = getattr(exc, "kwargs", {})
        url = kwargs.get("endpoint_url", "")
        return CloudError(
            f"{prefix}AWS endpoint unreachable: {url} ({type(exc).__name__}; check "
            "cloud.aws.endpoint_url and the region name)",
            "unreachable",
        )
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", ""))
        operation = getattr(exc, "operation_name", "")
        if code in _EXPIRED:
            return CloudError(f"{prefix}AWS credentials expired ({code})", "expired_credentials")
        if code in _REJECTED:
            return CloudError(
                f"{prefix}AWS rejected the credentials ({code}) for {operation}",
                "rejected_credentials",
            )
        if code in _DENIED:
            return CloudError(
                f"{prefix}access denied for {operation} ({code}): {message}", "access_denied"
            )
        if code in _THROTTLED:
            return CloudError(
                f"{prefix}{operation} still throttled after retries ({code})", "throttled"
            )
        return CloudError(f"{prefix}{operation} failed ({code}): {message}", "other")
    return CloudError(f"{prefix}{type(exc).__name__}: {exc}", "other")
