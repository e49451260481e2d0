"""A French Customer Insights export (tests/fixtures/french_ci) delivered whole to the emulator.

The sample has what a French brand really exports: country names in French (and one in German),
national phone numbers, typed attributes declared in model.json (decimal, int64, boolean, dateTime),
a mapped e-mail status with its date. Every contact with a valid e-mail arrives field by field; the
bad optional values are listed as field warnings; only the invalid e-mail is rejected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.test_reliability_bad_inputs import accounted, rejects, run, stored

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SOURCE = (Path(__file__).resolve().parents[1] / "fixtures" / "french_ci"
          / "CustomerInsights_00000000-0000-0000-0000-000000000015" / "OmnisendExport")


def test_french_export_arrives_field_by_field(emulator, omnisend_conn, tmp_path):
    result = run(
        omnisend_conn(), SOURCE, tmp_path, default_phone_region="FR", max_reject_ratio=0.2,
        mapping={"email": "Courriel", "firstName": "Prenom", "lastName": "Nom", "countryCode": "Pays",
                 "phone": "Telephone"},
        custom_properties={"ltv": "ValeurVie", "orders": "Commandes", "loyal": "Fidele",
                           "customerSince": "ClientDepuis"},
        email_status="StatutEmail", status_changed_at="StatutModifieLe",
        consent={"source": {"constant": "customer-insights"}})
    assert isinstance(result, dict), result
    assert (result["rows_read"], result["sent"], result["rejected"]) == (7, 6, 1)
    contacts = stored(emulator)
    amelie = contacts["amelie@example.fr"]
    assert (amelie["firstName"], amelie["lastName"], amelie["countryCode"]) == ("Amélie", "Dupont", "FR")
    assert amelie["phone"] == ["+33612345678"]
    assert amelie["customProperties"] == {"ltv": 1250.5, "orders": 12, "loyal": True,
                                          "customerSince": "2019-04-02T10:00:00Z"}
    expected = {"jonas@example.de": ("DE", "+49301234567"), "olivia@example.co.uk": ("GB", "+442079460958"),
                "john@example.com": ("US", "+12025550123"), "lukas@example.de": ("DE", "+49307654321")}
    for email, (country, phone) in expected.items():
        assert (contacts[email]["countryCode"], contacts[email]["phone"]) == (country, [phone])
    assert contacts["jonas@example.de"]["customProperties"]["loyal"] is False
    # the status with its date, and the consent source
    assert amelie["statuses"][0] == {"channel": "email", "status": "subscribed",
                                     "statusChangedAt": "2026-03-01T09:00:00Z"}
    assert contacts["jonas@example.de"]["statuses"][0]["status"] == "unsubscribed"
    assert amelie["consents"][0]["source"] == "customer-insights"
    # Chloé is sent without her bad optional values, which are listed as field warnings
    chloe = contacts["chloe@example.fr"]
    assert "countryCode" not in chloe and not chloe.get("phone")
    assert chloe.get("customProperties") == {"orders": 3}
    records = rejects(tmp_path)
    warnings = {(r["row"], r["field"], r["reason"]) for r in records if r["kind"] == "field_dropped"}
    assert warnings == {
        (5, "countryCode", "invalid_country"), (5, "phone", "invalid_phone"),
        (5, "customProperties.ltv", "invalid_property"), (5, "customProperties.loyal", "invalid_property"),
        (5, "customProperties.customerSince", "invalid_property"),
        (5, "channels.statusChangedAt", "invalid_status_changed_at"),
        (5, "channels.email", "invalid_status_changed_at"),  # undated, the status is not sent either
    }
    assert chloe["statuses"][0]["status"] == "nonSubscribed"  # the emulator's default: none was sent
    assert result["field_warnings"] == 7
    assert [(r["row"], r["reason"]) for r in rejects(tmp_path) if r["kind"] == "row_rejected"] == [
        (6, "invalid_email")]
    accounted(result, emulator, tmp_path)
