"""Turn what the user gave us (a URL string or an ObjectStoragePath-like object) into an fsspec location.

Everything else in ``lake/`` works on :class:`Location`: an fsspec filesystem, the filesystem-native path
(no protocol), and a credential-free URL from which the URLs of files below it are built. Keeping the URL
next to the path is what lets a resolved export be handed over as plain strings (XCom) and re-opened later
by another process with the same storage options.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from airflow_provider_omnisend.lake.errors import (
    LakeAccessError,
    LakeError,
    LakePathNotFound,
    MissingExtra,
    safe_reason,
)

# fsspec protocol -> (extra of this package, module that implements it)
_EXTRAS: dict[str, tuple[str, str]] = {
    "abfs": ("azure", "adlfs"),
    "abfss": ("azure", "adlfs"),
    "az": ("azure", "adlfs"),
    "adl": ("azure", "adlfs"),
    "s3": ("s3", "s3fs"),
    "s3a": ("s3", "s3fs"),
    "gs": ("gcs", "gcsfs"),
    "gcs": ("gcs", "gcsfs"),
}


@dataclass(frozen=True)
class Location:
    """A place in the lake: ``fs`` + native ``path``, and the ``url`` used to name files below it."""

    fs: AbstractFileSystem
    path: str
    url: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    def child(self, relative: str) -> Location:
        """The location ``relative`` (a '/'-separated path) below this one."""
        rel = relative.strip("/")
        path = posixpath.normpath(f"{self.path.rstrip('/')}/{rel}")
        url = f"{self.url.rstrip('/')}/{rel}"
        return Location(fs=self.fs, path=path, url=url)

    def parent(self) -> Location:
        path = posixpath.dirname(self.path.rstrip("/"))
        url = self.url.rstrip("/").rsplit("/", 1)[0]
        return Location(fs=self.fs, path=path, url=url)

    def url_for(self, fs_path: str) -> str:
        """The URL of ``fs_path`` (a native path returned by this filesystem) below this location."""
        base = self.path.rstrip("/")
        if fs_path == base:
            return self.url
        if fs_path.startswith(base + "/"):
            return f"{self.url.rstrip('/')}/{fs_path[len(base) + 1:]}"
        return self.fs.unstrip_protocol(fs_path)


def contained(root: Location, loc: Location) -> Location | None:
    """``loc`` with its path and URL normalised, if both stay inside ``root`` (same scheme and host for
    URLs); else None. Manifests are input: a partition location of ``../../secret.csv``, ``%2e%2e/`` or
    an https URL with ``/../`` must not read files outside the export the user pointed at."""
    path = posixpath.normpath(loc.path)
    base = posixpath.normpath(root.path)
    if not _inside(path, base):
        return None
    url, root_url = urlsplit(loc.url), urlsplit(root.url)
    url_path = posixpath.normpath(unquote(url.path)) if url.path else url.path
    if (url.scheme, url.netloc) != (root_url.scheme, root_url.netloc) or not _inside(
            url_path, posixpath.normpath(unquote(root_url.path) or "/")):
        return None
    return Location(fs=loc.fs, path=path, url=urlunsplit(url._replace(path=url_path)))


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def _protocol_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def missing_extra(protocol: str) -> MissingExtra:
    """The error for a URL scheme whose fsspec implementation is not installed."""
    extra, module = _EXTRAS.get(protocol, (protocol, protocol))
    return MissingExtra(extra=extra, needed_for=f"{protocol}:// URLs", module=module)


def make_filesystem(protocol: str, options: Mapping[str, Any], *, origin: str) -> AbstractFileSystem:
    """An fsspec filesystem from storage options found in ``origin`` (e.g. an Airflow connection's extra).

    Error messages name the option keys, never their values (they hold credentials).
    """
    try:
        return fsspec.filesystem(protocol, **dict(options))
    except ImportError as err:
        raise missing_extra(protocol) from err
    except (TypeError, ValueError) as err:
        raise LakeError(
            f"{origin} has storage options {sorted(options)} that the fsspec {protocol} filesystem does not "
            f"accept ({safe_reason(err)}). Keep only its options (for adlfs: connection_string, "
            "account_name, account_key, sas_token, tenant_id, client_id, client_secret)."
        ) from err


def _filesystem_for(url: str, storage_options: Mapping[str, Any] | None) -> tuple[AbstractFileSystem, str]:
    protocol = _protocol_of(url)
    try:
        return fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except ImportError as err:
        raise missing_extra(protocol) from err
    except ValueError as err:
        if "Protocol not known" in str(err):
            raise LakeError(
                f"Unsupported URL scheme {protocol!r} in {url!r}. Use a local path, file://, abfs://, az://, "
                "s3:// or gs://."
            ) from err
        raise LakeAccessError(url, action="open a filesystem for", reason=safe_reason(err)) from err
    except TypeError as err:
        raise LakeError(
            f"storage_options are not valid for {protocol}:// ({safe_reason(err)}). Pass only options the "
            f"fsspec {protocol} filesystem accepts."
        ) from err


def resolve_location(
    source: Any,
    *,
    storage_options: Mapping[str, Any] | None = None,
    filesystem: AbstractFileSystem | None = None,
) -> Location:
    """Resolve ``source`` into a :class:`Location`.

    ``source`` is a URL/path string, an ``os.PathLike``, or an object with ``.fs`` and ``.path`` (such as
    ``airflow.sdk.ObjectStoragePath``, whose filesystem carries the Airflow connection's credentials).
    ``filesystem`` overrides the filesystem used for a string source (the caller already authenticated).
    """
    # dir(), not hasattr(): ObjectStoragePath.fs is a property that raises when no filesystem is registered.
    if not isinstance(source, str) and {"fs", "path"} <= set(dir(source)):
        path = str(source.path)
        protocol = getattr(source, "protocol", "") or ""
        try:
            fs = filesystem or source.fs
        except Exception as err:  # e.g. ObjectStoragePath: no Airflow filesystem registered for the scheme
            raise LakeError(
                f"Could not get a filesystem for {protocol}://{path}: {safe_reason(err)}. Install the "
                "Airflow provider for this storage (e.g. apache-airflow-providers-microsoft-azure for "
                "abfs://) or pass the URL as a string with storage_options."
            ) from err
        url = f"{protocol}://{path}" if protocol and protocol not in ("file", "local") else path
        return _normalise(Location(fs=fs, path=path, url=url))
    url = str(source)
    if not url:
        raise LakeError("The lake `source` is empty: give a folder or file URL such as abfs://container/path.")
    if filesystem is not None:
        return _normalise(Location(fs=filesystem, path=filesystem._strip_protocol(url), url=url))
    fs, path = _filesystem_for(url, storage_options)
    return _normalise(Location(fs=fs, path=path, url=url))


def _normalise(loc: Location) -> Location:
    path = loc.path.rstrip("/") or loc.path
    url = loc.url.rstrip("/") or loc.url
    if loc.is_local:
        # Local URLs become absolute paths so that file URLs stay valid from any working directory.
        path = loc.fs._strip_protocol(path)
        url = path
    return Location(fs=loc.fs, path=path, url=url)


def file_location(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    filesystem: AbstractFileSystem | None = None,
) -> tuple[AbstractFileSystem, str]:
    """The filesystem and native path of one file URL taken from a resolved export."""
    if filesystem is not None:
        return filesystem, filesystem._strip_protocol(url)
    return _filesystem_for(url, storage_options)


def info(loc: Location) -> dict[str, Any]:
    """``fs.info`` with lake errors: missing -> LakePathNotFound, anything else -> LakeAccessError."""
    try:
        return loc.fs.info(loc.path)
    except FileNotFoundError as err:
        raise LakePathNotFound(loc.url) from err
    except Exception as err:
        raise LakeAccessError(loc.url, action="look up", reason=safe_reason(err)) from err


def list_dir(loc: Location) -> list[dict[str, Any]]:
    """Entries directly in a folder (with details); a missing folder lists as empty."""
    try:
        return list(loc.fs.ls(loc.path, detail=True))
    except FileNotFoundError:
        return []
    except Exception as err:
        raise LakeAccessError(loc.url, action="list", reason=safe_reason(err)) from err


def find_files(loc: Location) -> list[dict[str, Any]]:
    """All files below a folder (recursive, with details), sorted by path."""
    try:
        found = loc.fs.find(loc.path, detail=True, withdirs=False)
    except FileNotFoundError:
        return []
    except Exception as err:
        raise LakeAccessError(loc.url, action="list", reason=safe_reason(err)) from err
    return [found[k] for k in sorted(found)]


def read_text(loc: Location, *, what: str) -> str:
    """Read a small text file (a manifest) completely."""
    try:
        with loc.fs.open(loc.path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError as err:
        raise LakePathNotFound(loc.url, detail=f"{what} is missing") from err
    except Exception as err:
        raise LakeAccessError(loc.url, action=f"read {what}", reason=safe_reason(err)) from err
    return data.decode("utf-8-sig")


def modified_time(entry: Mapping[str, Any]) -> str:
    """A file's modification time as a string, whatever key the filesystem reports it under."""
    for key in ("mtime", "last_modified", "LastModified", "updated", "mtime_ns", "created"):
        value = entry.get(key)
        if value is not None:
            return str(value)
    return ""
