"""Error messages quote third-party errors without credentials or row data."""

from __future__ import annotations

import pytest
from fsspec.implementations.local import LocalFileSystem

from airflow_provider_omnisend.lake import LakeError, PartitionUnreadable, iter_batches, resolve_export
from airflow_provider_omnisend.lake.errors import safe_reason


def test_credentials_are_redacted_from_quoted_errors():
    err = OSError(
        "403 for https://acct.blob.core.windows.net/c/x?sv=2024&sig=abcDEF%2Bsecret&se=2026 with "
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=SECRETKEY==;EndpointSuffix=x"
    )
    text = safe_reason(err)
    assert "abcDEF" not in text and "SECRETKEY" not in text
    assert "sig=***" in text and "AccountKey=***" in text
    assert text.startswith("OSError: 403")


def test_csv_row_contents_are_dropped():
    err = ValueError("CSV parse error: Row #3: Expected 4 columns, got 3: ann@example.com,Ann,+48")
    assert safe_reason(err) == "ValueError: CSV parse error: Row #3: Expected 4 columns, got 3"


def test_invalid_utf8_partition_is_named(tmp_path):
    (tmp_path / "bad.csv").write_bytes(b"Email\n\xff\xfe@example.com\n")
    export = resolve_export(str(tmp_path))
    with pytest.raises(PartitionUnreadable) as err:
        list(iter_batches(export, columns=["Email"]))
    assert "bad.csv" in str(err.value) and "UTF8" in str(err.value)


def test_objectstoragepath_like_source_without_a_filesystem_is_explained():
    class NoFilesystem:
        path = "cont/export"
        protocol = "abfs"

        @property
        def fs(self) -> LocalFileSystem:
            raise ValueError("No filesystem registered for scheme abfs")

    with pytest.raises(LakeError, match="apache-airflow-providers-microsoft-azure"):
        resolve_export(NoFilesystem())
