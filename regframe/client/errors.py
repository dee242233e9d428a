"""The exceptions regframe raises: one class per failure, all under RegistryError.

Transport failures are mapped to these in one place (``transport.py``); nothing
else in the package catches urllib3 exceptions.
"""

from __future__ import annotations

from typing import TypedDict, Unpack


def bare_url(url: str) -> str:
    """A URL without query or fragment: pre-signed storage URLs carry their signature there, upload URLs
    their session state."""
    return url.split("#", 1)[0].split("?", 1)[0]


class ErrorDetails(TypedDict, total=False):
    """The keyword arguments every RegistryError takes, passed on by the subclasses that add their own."""

    status: int | None
    code: str | None
    registry_message: str | None
    url: str | None


class RegistryError(Exception):
    """Base of every regframe error; carries the HTTP status and the registry's OCI error, and ``url``
    without its query or fragment: pre-signed storage URLs carry their signature there, upload URLs
    their session state."""

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        registry_message: str | None = None,
        url: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.registry_message = registry_message
        self.url = bare_url(url) if isinstance(url, str) else url


class RegistryAuthenticationError(RegistryError):
    """Credentials are wrong, missing, or the registry refuses anonymous access."""


class RegistryAuthorizationError(RegistryError):
    """Credentials are valid but lack the right for this request."""


class RegistryUnknownError(RegistryError):
    """No registry answers at that URL."""


class RegistryConnectionError(RegistryUnknownError):
    """The connection was reset or cut short after the registry had answered before."""


class RegistrySSLError(RegistryError):
    """The registry's TLS certificate cannot be validated."""


class InsecureTransportError(RegistryError):
    """Refused: credentials would travel in clear text (plain http, or an https URL downgraded to http)."""


class RegistryTimeoutError(RegistryError):
    """Connecting or waiting for data took longer than the configured timeout."""


class RegistryVersionError(RegistryError):
    """The server does not speak the Docker Registry HTTP API v2."""


class RegistryProtocolError(RegistryError):
    """The server answered something the API does not allow (bad JSON, oversized body, looping links)."""


class NotFoundError(RegistryError):
    """The repository, manifest or blob does not exist."""


class CatalogUnavailableError(RegistryError):
    """The registry refuses its catalog (401, 403, 404 or ``UNSUPPORTED``), as Docker Hub, GHCR, Quay and
    GitLab.com do: crawl named repositories instead (``inventory(repositories=...)``)."""


class RateLimitedError(RegistryError):
    """The registry answered 429; ``retry_after`` holds the seconds it asked to wait."""

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kw: Unpack[ErrorDetails]):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class DigestMismatchError(RegistryError):
    """Content does not hash to the digest it was asked for or announced with."""

    def __init__(
        self,
        message: str = "",
        *,
        expected: str | None = None,
        actual: str | None = None,
        cut_short: bool = False,
        **kw: Unpack[ErrorDetails],
    ):
        super().__init__(message, **kw)
        self.expected = expected
        self.actual = actual
        # The connection broke before the whole body came: reading it again may well succeed.
        self.cut_short = cut_short


class MissingLayerError(RegistryError):
    """A blob a manifest references is neither in the local directory nor in the registry."""

    def __init__(self, message: str = "", *, digest: str | None = None, **kw: Unpack[ErrorDetails]):
        super().__init__(message, **kw)
        self.digest = digest


class DeleteDisabledError(RegistryError):
    """The registry has deletion disabled (distribution answers 405)."""


class TagMovedError(RegistryError):
    """Refused: the tag no longer points at the digest the caller expected (moved or removed meanwhile)."""

    def __init__(
        self, message: str = "", *, expected: str | None = None, actual: str | None = None, **kw: Unpack[ErrorDetails]
    ):
        super().__init__(message, **kw)
        self.expected = expected
        self.actual = actual


class InvalidReferenceError(RegistryError, ValueError):
    """A repository name, tag, digest or platform does not follow the distribution grammar."""


__all__ = [name for name, obj in list(globals().items()) if isinstance(obj, type) and issubclass(obj, Exception)]
