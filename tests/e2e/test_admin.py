"""The admin pages: users, API clients and the audit log; hidden from clinicians."""

from __future__ import annotations

import re

import uuid

from e2e_steps import expect, go_to, sign_in, sign_in_as_admin
from support import client_credentials_token, new_user


def accept_confirmations(page) -> None:
    page.on("dialog", lambda dialog: dialog.accept())


def test_an_admin_creates_a_user_who_then_signs_in(page, gateway, screenshots):
    username, password = f"dr-{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex
    sign_in_as_admin(page, gateway)
    go_to(page, "Users")
    users = page.locator("#users")
    # the administrator's own row, not another account whose name begins with it (admin-...)
    own_row = re.compile(rf"^{re.escape(gateway.admin_username)}(?![\w-])")
    expect(users.get_by_role("row").filter(has_text=own_row)).to_contain_text("(you)")

    users.get_by_label("Username").fill(username)
    users.get_by_label("Initial password").fill(password)
    users.get_by_label("Role").select_option(label="Clinician")
    users.get_by_role("button", name="Create user").click()

    expect(users.get_by_role("status").filter(has_text=username)).to_have_text(
        f"The user {username} was created and can sign in now."
    )
    row = users.get_by_role("row").filter(has_text=username)
    expect(row).to_contain_text("Clinician")
    expect(row).to_contain_text("Active")
    screenshots(page, "admin-users")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, username, password)
    expect(page.get_by_role("heading", name="New classification")).to_be_visible()
    expect(page.locator("#session-user")).to_have_text(f"{username} · Clinician")
    main_nav = page.get_by_role("navigation", name="Main")
    expect(main_nav.get_by_role("link")).to_have_text(["Classify", "History", "Models"])
    page.goto("/#/admin/users")  # typed in by hand: a clinician stays out
    expect(page.get_by_role("heading", name="New classification")).to_be_visible()
    expect(page.locator("#users")).to_be_hidden()


def test_a_taken_username_gets_its_message(page, gateway):
    sign_in_as_admin(page, gateway)
    go_to(page, "Users")
    users = page.locator("#users")
    users.get_by_label("Username").fill(gateway.admin_username)
    users.get_by_label("Initial password").fill("pw-" + uuid.uuid4().hex)
    users.get_by_role("button", name="Create user").click()
    expect(users.get_by_role("alert")).to_have_text("This username is taken. Choose another one.")


def test_an_admin_disables_a_user_who_can_no_longer_sign_in(page, gateway, admin_client):
    username, password = new_user(admin_client)
    accept_confirmations(page)
    sign_in_as_admin(page, gateway)
    go_to(page, "Users")

    page.get_by_role("button", name=f"Disable {username}").click()

    expect(page.locator("#users").get_by_role("row").filter(has_text=username)).to_contain_text("Disabled")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, username, password)
    expect(page.get_by_role("alert")).to_have_text("The username or password is not correct.")


def test_an_admin_creates_an_api_client_whose_secret_is_shown_once(page, gateway, screenshots):
    name = f"RIS {uuid.uuid4().hex[:6]}"
    accept_confirmations(page)
    sign_in_as_admin(page, gateway)
    go_to(page, "API clients")
    clients = page.locator("#clients")

    clients.get_by_label("Name").fill(name)
    clients.get_by_role("button", name="Create API client").click()

    secret_box = clients.get_by_role("region", name=f"Client secret of {name}")
    expect(secret_box).to_be_visible()
    expect(secret_box).to_contain_text("not shown again")
    client_id = secret_box.locator("[data-role=secret-client-id]").inner_text()
    secret = secret_box.locator("[data-role=secret-value]").inner_text()
    assert client_credentials_token(gateway.url, client_id, secret)  # the shown secret works
    row = clients.get_by_role("row").filter(has_text=name)
    expect(row).to_contain_text(client_id)
    expect(row).to_contain_text("Active")
    screenshots(page, "admin-clients")

    secret_box.get_by_role("button", name="I have stored it").click()
    expect(secret_box).to_be_hidden()
    expect(clients).not_to_contain_text(secret)

    clients.get_by_role("button", name=f"Disable {name}").click()
    expect(row).to_contain_text("Disabled")


def test_browse_the_audit_log_with_filters(page, gateway, admin_client, screenshots):
    username, _ = new_user(admin_client)
    sign_in_as_admin(page, gateway)
    go_to(page, "Audit log")
    audit = page.locator("#audit")
    expect(audit.locator("tbody tr").first).to_be_visible()

    audit.get_by_label("Action").fill("user.create")
    audit.get_by_label("Actor").fill(gateway.admin_username)
    with page.expect_response(lambda response: "/api/audit?" in response.url) as answer:
        audit.get_by_role("button", name="Apply filters").click()

    events = answer.value.json()["items"]
    assert events and {event["action"] for event in events} == {"user.create"}
    rows = audit.locator("tbody tr")
    expect(rows).to_have_count(len(events))
    expect(rows.first).to_contain_text("user.create")
    expect(rows.first).to_contain_text("success")
    expect(audit.get_by_role("row").filter(has_text="user.create").first).to_contain_text(gateway.admin_username)
    assert any(event["target"] and event["target"].startswith("user:") for event in events)
    screenshots(page, "audit")

    audit.get_by_label("Action").fill("no.such.action")
    audit.get_by_role("button", name="Apply filters").click()
    expect(audit.get_by_text("No audit events match these filters.")).to_be_visible()
    assert username  # the event this test looked for
