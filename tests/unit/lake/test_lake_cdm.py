"""CDM folders: model.json and *.manifest.cdm.json exports as Customer Insights writes them."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from airflow_provider_omnisend.lake import (
    ColumnNotFound,
    CsvLayoutMismatch,
    EntityNotFound,
    ExportNotReady,
    LakeError,
    ManifestNotFound,
    PartitionUnreadable,
    iter_batches,
    resolve_export,
)
from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export, write_manifest_export


def test_model_json_resolves_newest_complete_refresh_and_streams_rows(cdm_export, sample, collect):
    export = resolve_export(str(cdm_export), segment="Customer")

    assert export.format == "cdm"
    assert export.entity == "Customer"
    assert export.export_id == "cdm:Customer:2026/01/15/0300"
    assert export.refresh_time == "2026-01-15T03:00:00Z"
    assert export.columns == sample.columns
    assert export.csv is not None and export.csv.header is False
    assert [f.split("/")[-6:] for f in export.files] == [
        ["Customer", "2026", "01", "15", "0300", "Customer_1.csv"],
        ["Customer", "2026", "01", "15", "0300", "Customer_2.csv"],
    ]
    assert all(Path(f).is_file() for f in export.files)

    data = collect(iter_batches(export, columns=["Email", "FirstName", "Phone"], batch_size=2))
    assert list(data) == ["Email", "FirstName", "Phone"]
    assert data["Email"] == sample.expected("Email")
    assert data["FirstName"] == sample.expected("FirstName")  # quotes, commas, newline, non-ASCII
    assert data["Phone"] == sample.expected("Phone")


def test_batches_are_bounded_by_batch_size(cdm_export):
    export = resolve_export(str(cdm_export))
    sizes = [b.num_rows for b in iter_batches(export, columns=["Email"], batch_size=2)]
    assert sizes == [2, 2, 1]


def test_incomplete_newest_refresh_falls_back_to_the_previous_complete_one(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              refresh_times=sample.refreshes, incomplete_last=True)
    export = resolve_export(str(folder))
    assert export.export_id == "cdm:Customer:2026/01/14/0300"
    assert all("/2026/01/14/0300/" in f for f in export.files)


def test_only_an_incomplete_refresh_is_not_ready(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              partitions=3, incomplete_last=True)
    with pytest.raises(ExportNotReady) as err:
        resolve_export(str(folder))
    assert "misses 1 of 3 partition file(s)" in str(err.value)
    assert "'Customer'" in str(err.value)
    assert str(folder) in str(err.value)


def test_new_refresh_changes_the_export_id(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              refresh_times=sample.refreshes[:1])
    first = resolve_export(str(folder)).export_id
    write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                     refresh_times=sample.refreshes)
    assert resolve_export(str(folder)).export_id != first


def test_manifest_cdm_json_export_with_header_and_semicolons(tmp_path, sample, collect):
    folder = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                                   refresh_times=sample.refreshes, header=True, delimiter=";")
    export = resolve_export(str(folder), segment="customer")
    assert export.export_id == "cdm:Customer:2026/01/15/0300"
    assert export.columns == sample.columns
    assert export.csv is not None and export.csv.header is True and export.csv.delimiter == ";"
    data = collect(iter_batches(export, columns=["FirstName", "Email"]))
    assert data["FirstName"] == sample.expected("FirstName")
    assert data["Email"] == sample.expected("Email")


def test_manifest_cdm_json_incomplete_refresh(tmp_path, sample):
    folder = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                                   refresh_times=sample.refreshes, incomplete_last=True)
    assert resolve_export(str(folder)).export_id == "cdm:Customer:2026/01/14/0300"


def test_manifest_attribute_groups_are_flattened(tmp_path, sample, collect):
    folder = write_manifest_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows)
    definition_file = folder / "Customer.cdm.json"
    doc = json.loads(definition_file.read_text())
    attrs = doc["definitions"][0]["hasAttributes"]
    doc["definitions"][0]["hasAttributes"] = [
        {"attributeGroupReference": {"attributeGroupName": "attributesAddedAtThisScope", "members": attrs}}
    ]
    definition_file.write_text(json.dumps(doc))
    export = resolve_export(str(folder))
    assert export.columns == sample.columns
    assert collect(iter_batches(export, columns=["Email"]))["Email"] == sample.expected("Email")


def test_entity_is_picked_by_segment_name_ignoring_case_spaces_and_separators(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="VIP_Customers", columns=sample.columns, rows=sample.rows,
                              extra_entities=["Orders", "Customer"])
    assert resolve_export(str(folder), segment="vip customers").entity == "VIP_Customers"
    assert resolve_export(str(folder), segment="VIP-customers").entity == "VIP_Customers"
    assert resolve_export(str(folder), entity="VIP_Customers", segment="whatever").entity == "VIP_Customers"


def test_entity_not_found_lists_the_entities(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              extra_entities=["Orders"])
    with pytest.raises(EntityNotFound) as err:
        resolve_export(str(folder), entity="Custmer")
    message = str(err.value)
    assert "'Custmer'" in message and "'Customer'" in message and "'Orders'" in message
    assert "Did you mean 'Customer'" in message
    assert "entity=" in message

    with pytest.raises(EntityNotFound) as err:
        resolve_export(str(folder), segment="Newsletter")
    assert "'Customer', 'Orders'" in str(err.value)


def test_entity_with_no_partitions_is_not_ready(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              extra_entities=["Orders"])
    with pytest.raises(ExportNotReady, match="lists no partitions for entity 'Orders'"):
        resolve_export(str(folder), entity="Orders")


def test_the_only_entity_is_used_whatever_the_segment_is_called(cdm_export):
    assert resolve_export(str(cdm_export), segment="Spring newsletter").entity == "Customer"


@pytest.mark.parametrize("settings_on", ["entity", "model"])
def test_file_format_settings_are_inherited_from_entity_or_model(tmp_path, sample, collect, settings_on):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=sample.rows,
                              header=True, delimiter="|", settings_on=settings_on)
    export = resolve_export(str(folder))
    assert export.csv is not None and (export.csv.header, export.csv.delimiter) == (True, "|")
    assert collect(iter_batches(export, columns=["FirstName"]))["FirstName"] == sample.expected("FirstName")


def test_model_json_file_itself_can_be_the_source(cdm_export):
    export = resolve_export(str(cdm_export / "model.json"))
    assert export.export_id == "cdm:Customer:2026/01/15/0300"


def test_locations_map_onto_a_renamed_local_copy(cdm_export, tmp_path, sample, collect):
    copy = tmp_path / "downloaded"
    shutil.copytree(cdm_export, copy)
    export = resolve_export(str(copy))
    assert all(f.startswith(str(copy) + "/Customer/2026/01/15/0300/") for f in export.files)
    assert collect(iter_batches(export, columns=["Email"]))["Email"] == sample.expected("Email")


def _hand_written_model(folder: Path, locations: list[str], **settings) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model = {
        "name": "x",
        "entities": [{
            "$type": "LocalEntity", "name": "Contacts",
            "attributes": [{"name": "Email", "dataType": "string"}, {"name": "Name", "dataType": "string"}],
            "partitions": [{"name": f"p{i}", "location": loc, "fileFormatSettings": {
                "$type": "CsvFormatSettings", **settings}} for i, loc in enumerate(locations)],
        }],
    }
    (folder / "model.json").write_text(json.dumps(model))


def test_locations_outside_the_ci_layout_are_found_by_probing(tmp_path, collect):
    folder = tmp_path / "copy"
    (folder / "Contacts").mkdir(parents=True)
    (folder / "Contacts" / "part-1.csv").write_text("a@example.com,A\n")
    (folder / "Contacts" / "part-2.csv").write_text("b@example.com,B\n")
    base = "https://acct.dfs.core.windows.net/cont/deep/export%20folder/Contacts"
    _hand_written_model(folder, [f"{base}/part-1.csv", f"{base}/part-2.csv"])
    export = resolve_export(str(folder))
    assert [Path(f).name for f in export.files] == ["part-1.csv", "part-2.csv"]
    assert collect(iter_batches(export, columns=["Email"]))["Email"] == ["a@example.com", "b@example.com"]


def test_relative_locations_quote_style_none_and_latin1(tmp_path, collect):
    folder = tmp_path / "x"
    (folder / "Contacts").mkdir(parents=True)
    (folder / "Contacts" / "p.csv").write_bytes('ève@example.com\t"Ève"\n'.encode("latin-1"))
    _hand_written_model(folder, ["Contacts/p.csv"], delimiter="\t", quoteStyle="QuoteStyle.None",
                        encoding="ISO-8859-1")
    export = resolve_export(str(folder))
    assert export.csv is not None and export.csv.quotechar is None
    data = collect(iter_batches(export, columns=["Email", "Name"]))
    assert data == {"Email": ["ève@example.com"], "Name": ['"Ève"']}  # no quoting: quotes are data


def test_unplaceable_location_is_a_clear_error(tmp_path):
    folder = tmp_path / "x"
    _hand_written_model(folder, ["https://acct.dfs.core.windows.net/cont/elsewhere/p.csv"])
    with pytest.raises(LakeError, match="Cannot place partition location"):
        resolve_export(str(folder))


def test_headerless_partition_with_wrong_column_count_names_file_and_counts(tmp_path, sample):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns[:3],
                              rows=[r[:3] for r in sample.rows], partitions=1)
    model_file = folder / "model.json"
    model = json.loads(model_file.read_text())
    model["entities"][0]["attributes"].append({"name": "Phone", "dataType": "string"})
    model_file.write_text(json.dumps(model))

    export = resolve_export(str(folder))
    with pytest.raises(CsvLayoutMismatch) as err:
        list(iter_batches(export, columns=["Email"]))
    message = str(err.value)
    assert "Customer_1.csv" in message
    assert "3 column(s)" in message and "4 attribute(s)" in message
    assert "@example.com" not in message  # never quote row data


def test_unknown_column_lists_the_available_ones(cdm_export):
    export = resolve_export(str(cdm_export))
    with pytest.raises(ColumnNotFound) as err:
        iter_batches(export, columns=["email"])
    message = str(err.value)
    assert "'email'" in message and "'Email'" in message and "'CustomerId'" in message
    assert "'email' -> 'Email'?" in message


def test_partition_deleted_after_resolving_is_reported_by_name(cdm_export):
    export = resolve_export(str(cdm_export))
    Path(export.files[1]).unlink()
    with pytest.raises(PartitionUnreadable) as err:
        list(iter_batches(export, columns=["Email"]))
    assert "Customer_2.csv" in str(err.value)


def test_empty_export_yields_nothing_and_logs_zero_rows(tmp_path, sample, caplog):
    folder = write_cdm_export(tmp_path, entity="Customer", columns=sample.columns, rows=[])
    export = resolve_export(str(folder))
    with caplog.at_level(logging.INFO, logger="airflow_provider_omnisend.lake"):
        assert list(iter_batches(export, columns=["Email"])) == []
    assert "Read 0 rows" in caplog.text


def test_folder_without_manifest_is_manifest_not_found(tmp_path):
    (tmp_path / "data.csv").write_text("Email\na@example.com\n")
    with pytest.raises(ManifestNotFound) as err:
        resolve_export(str(tmp_path), format="cdm")
    assert "model.json" in str(err.value) and "'data.csv'" in str(err.value)


def test_broken_model_json_says_so(tmp_path):
    (tmp_path / "model.json").write_text('{"entities": [')
    with pytest.raises(LakeError, match="is not valid JSON"):
        resolve_export(str(tmp_path))
