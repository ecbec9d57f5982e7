"""CSV exports in the browser: administrators save the audit log and the history as files; clinicians see no export."""

from __future__ import annotations

import csv
import io

from e2e_steps import expect, go_to, sign_in, sign_in_as_admin
from support import new_user


def saved_csv(page, button) -> tuple[str, list[dict[str, str]]]:
    with page.expect_download() as download:
        button.click()
    path = download.value.path()
    return download.value.suggested_filename, list(csv.DictReader(io.StringIO(path.read_text())))


def test_an_admin_exports_the_audit_log_and_the_history(page, gateway):
    sign_in_as_admin(page, gateway)
    go_to(page, "Audit log")
    audit = page.locator("#audit")
    audit.get_by_label("Action").fill("auth.login")
    audit.get_by_role("button", name="Apply filters").click()

    name, rows = saved_csv(page, audit.get_by_role("button", name="Export CSV"))

    assert name.startswith("cxr-audit-") and name.endswith(".csv")
    assert rows and {row["action"] for row in rows} == {"auth.login"}
    assert all(len(row["hash"]) == 64 for row in rows)

    go_to(page, "History")
    name, rows = saved_csv(page, page.locator("#history").get_by_role("button", name="Export CSV"))
    assert name.startswith("cxr-results-")
    assert rows == [] or {"id", "label", "model_name", "probability"} <= set(rows[0])


def test_clinicians_have_no_export(page, gateway, admin_client):
    username, password = new_user(admin_client)
    sign_in(page, username, password)
    go_to(page, "History")
    expect(page.locator("#history").get_by_role("button", name="Export CSV")).to_have_count(0)
