"""Automatic logoff: the web app signs out after the gateway's idle time without input, and input keeps it."""

from __future__ import annotations

from e2e_steps import expect, sign_in


def test_the_app_signs_out_after_the_idle_time_and_input_keeps_the_session(open_page, gateway, logs_dir):
    from processes import free_port, frontend_process, gateway_process

    env = gateway.env | {"SESSION_IDLE_MINUTES": "0.05"}  # 3 s
    port = free_port()
    short_idle = gateway_process(port, env, logs_dir / "gateway-short-idle.log").start()
    frontend = frontend_process(free_port(), f"http://127.0.0.1:{port}", logs_dir / "frontend-idle.log").start()
    try:
        page = open_page(frontend.health_url.removesuffix("/healthz"))
        sign_in(page, gateway.admin_username, gateway.admin_password)
        navigation = page.get_by_role("navigation", name="Main")
        expect(navigation).to_be_visible()
        for _ in range(3):  # 4.5 s in all, never 3 s without a key pressed: still signed in
            page.wait_for_timeout(1500)
            page.keyboard.press("Shift")
        expect(navigation).to_be_visible()

        page.wait_for_timeout(3500)  # no input
        expect(page.get_by_role("status").filter(has_text="signed out after a time without activity")).to_be_visible()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        expect(navigation).to_be_hidden()
    finally:
        frontend.stop()
        short_idle.stop()
