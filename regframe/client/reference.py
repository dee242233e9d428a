"""Names, tags, digests and platforms, checked against the distribution grammar before any request."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from .errors import InvalidReferenceError

if TYPE_CHECKING:
    from _hashlib import HASH

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# The OCI digest grammar, algorithm:encoded; validate_digest adds the algorithms and lengths regframe accepts.
DIGEST_GRAMMAR = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([A-Za-z0-9=_-]+)")
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_PLATFORM_PART = re.compile(r"[a-z0-9_.-]+")
MAX_NAME_LENGTH = 255


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_repository(name: object) -> str:
    """Return ``name`` if it is a valid repository name, else raise InvalidReferenceError saying why."""
    if not isinstance(name, str):
        raise InvalidReferenceError(f"repository name must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidReferenceError("repository name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidReferenceError(f"repository name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}")
    if name != name.lower():
        raise InvalidReferenceError(f"repository name {_show(name)} has upper-case letters")
    if not _NAME_RE.fullmatch(name):
        for part in name.split("/"):
            if part in ("", ".", ".."):
                raise InvalidReferenceError(f"repository name {_show(name)} has an empty, '.' or '..' path component")
        raise InvalidReferenceError(
            f"repository name {_show(name)} is not valid: components are lower-case letters and "
            "digits separated by '.', '_', '__' or '-', joined by '/'"
        )
    return name


def validate_tag(tag: object) -> str:
    """Return ``tag`` if it is a valid tag, else raise InvalidReferenceError."""
    if not isinstance(tag, str):
        raise InvalidReferenceError(f"tag must be a string, not {type(tag).__name__}")
    if not tag:
        raise InvalidReferenceError("tag is empty")
    if len(tag) > 128:
        raise InvalidReferenceError(f"tag is {len(tag)} characters long; the limit is 128")
    if not _TAG_RE.fullmatch(tag):
        raise InvalidReferenceError(
            f"tag {_show(tag)} is not valid: letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        )
    return tag


@lru_cache(maxsize=1 << 16)
def _checked_digest(digest: str) -> str:
    return _validate_digest(digest)


def validate_digest(digest: object) -> str:
    """Return ``digest`` if it is a well-formed sha256 or sha512 digest, else raise InvalidReferenceError.

    A crawl checks each digest several times; valid ones are remembered."""
    if isinstance(digest, str):
        return _checked_digest(digest)
    return _validate_digest(digest)


def _validate_digest(digest: object) -> str:
    """Return ``digest`` if it is a well-formed sha256 or sha512 digest, else raise InvalidReferenceError."""
    if not isinstance(digest, str):
        raise InvalidReferenceError(f"digest must be a string, not {type(digest).__name__}")
    m = DIGEST_GRAMMAR.fullmatch(digest)
    if not m:
        raise InvalidReferenceError(f"digest {_show(digest)} is not of the form algorithm:hex")
    algorithm, encoded = m.groups()
    if algorithm not in _HEX_LENGTHS:
        raise InvalidReferenceError(f"digest algorithm {algorithm!r} is not supported (use sha256 or sha512)")
    if len(encoded) != _HEX_LENGTHS[algorithm] or not re.fullmatch(r"[0-9a-f]+", encoded):
        raise InvalidReferenceError(
            f"{algorithm} digest must be {_HEX_LENGTHS[algorithm]} lower-case hex characters: {_show(digest)}"
        )
    return digest


def validate_reference(reference: object) -> str:
    """A manifest reference is a tag or a digest."""
    if isinstance(reference, str) and ":" in reference:
        return validate_digest(reference)
    return validate_tag(reference)


def is_digest(reference: str) -> bool:
    return ":" in reference


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    @classmethod
    def from_descriptor(cls, platform: object) -> Platform | None:
        if not platform or not isinstance(platform, dict):
            return None
        variant = platform.get("variant")
        return cls(
            str(platform.get("os", "")), str(platform.get("architecture", "")), str(variant) if variant else None
        )

    def matches(self, other: Platform) -> bool:
        """True if ``other`` satisfies this request; a request without variant accepts any variant. Variants
        are compared as containerd normalises them, so ``linux/arm64/v8`` finds an arm64 entry listed without
        a variant (and ``linux/arm/v7`` an arm one); other architectures' variants must be equal."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        if self.variant is None:
            return True
        return _normal_variant(self.architecture, self.variant) == _normal_variant(other.architecture, other.variant)


def _normal_variant(architecture: str, variant: str | None) -> str | None:
    """A variant as containerd's ``platforms.Normalize`` writes it: none, ``8`` or ``v8.0`` on arm64 is v8 (``9``,
    ``9.0`` and ``v9.0`` are v9); none or ``7`` on arm is v7 (``5``, ``6`` and ``8`` get their ``v``)."""
    if architecture == "arm64":
        if variant in (None, "8", "v8", "v8.0"):
            return "v8"
        if variant in ("9", "9.0", "v9.0"):
            return "v9"
    elif architecture == "arm":
        if variant in (None, "7"):
            return "v7"
        if variant in ("5", "6", "8"):
            return f"v{variant}"
    return variant


def parse_platform(text: object) -> Platform:
    """Parse ``os/arch[/variant]`` such as ``linux/arm64/v8``."""
    if isinstance(text, Platform):
        return text
    if not isinstance(text, str) or not text:
        raise InvalidReferenceError(f"platform must be a string like 'linux/amd64', got {_show(text)}")
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(p and _PLATFORM_PART.fullmatch(p) for p in parts):
        raise InvalidReferenceError(
            f"platform {_show(text)} is not of the form os/architecture[/variant], e.g. 'linux/arm64/v8'"
        )
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


@dataclass(frozen=True)
class Reference:
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes in /manifests/<reference>: the digest when there is one."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: object) -> Reference:
    """Parse ``repository[:tag][@digest]`` (no registry host) into a checked Reference."""
    if not isinstance(text, str) or not text:
        raise InvalidReferenceError(f"image reference must be a non-empty string, got {_show(text)}")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        validate_digest(digest)
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        validate_tag(tag)
    validate_repository(rest)
    return Reference(rest, tag, digest)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hasher_for(digest: str) -> HASH:
    """A fresh hashlib object for the algorithm of ``digest``."""
    algorithm = validate_digest(digest).split(":", 1)[0]
    return hashlib.new(algorithm)


def compute_digest(data: bytes, like: str = "sha256:") -> str:
    algorithm = like.split(":", 1)[0] or "sha256"
    return f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()
