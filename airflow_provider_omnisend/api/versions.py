"""What differs between Omnisend API generations: base URL, authentication headers, batch item cap."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_VERSION = "2026-03-15"


@dataclass(frozen=True)
class ApiVersion:
    """One Omnisend API generation as the client must speak it (docs/omnisend-api.md, sections 1 and 3)."""

    name: str
    default_base_url: str
    batch_item_cap: int
    #: Legacy generations put the version in the path and authenticate with ``X-API-KEY``.
    legacy: bool

    def auth_headers(self, api_key: str) -> dict[str, str]:
        if self.legacy:
            return {"X-API-KEY": api_key}
        return {"Authorization": f"Omnisend-API-Key {api_key}", "Omnisend-Version": self.name}

    def base_url(self, host: str | None) -> str:
        """The API root for a connection's host field.

        An empty host means Omnisend's production URL. A host ending in ``/api`` (the form's placeholder)
        is re-pointed at ``/v3`` or ``/v5`` for a legacy version, so switching the version field alone
        is enough.
        """
        if not host:
            return self.default_base_url
        url = host.rstrip("/")
        if "://" not in url:
            url = f"https://{url}"
        if self.legacy and url.endswith("/api"):
            url = url[: -len("/api")] + f"/{self.name}"
        return url


VERSIONS: dict[str, ApiVersion] = {
    "2026-03-15": ApiVersion("2026-03-15", "https://api.omnisend.com/api", batch_item_cap=100, legacy=False),
    "v5": ApiVersion("v5", "https://api.omnisend.com/v5", batch_item_cap=1000, legacy=True),
    "v3": ApiVersion("v3", "https://api.omnisend.com/v3", batch_item_cap=1000, legacy=True),
}

#: Omnisend recommends batch bodies of at most 1 MB (docs/omnisend-api.md, section 3).
MAX_BATCH_BODY_BYTES = 1_000_000


def get_version(name: str | None) -> ApiVersion:
    """Look a version up by name; the error lists the supported ones."""
    key = (name or DEFAULT_VERSION).strip()
    try:
        return VERSIONS[key]
    except KeyError:
        raise ValueError(
            f"Unsupported Omnisend API version {key!r}. Choose one of: {', '.join(VERSIONS)} "
            f"({DEFAULT_VERSION} is current; v5 and v3 are legacy)."
        ) from None
