"""Signing in with an access token, and self-registration, in a real browser (headless
Chromium through Playwright) plus the refusals a form must give: a bad, expired, revoked or
too weak token shows the form again with a message and opens no session; posts without the
form's CSRF token are refused; `/signup` is a 404 unless `[auth] allow_signup` is on, and
when on it keeps the account-name rules, the password policy and the sign-in rate limit."""

from __future__ import annotations

import re
import subprocess
import time

import httpx
import pytest

from browser import chromium, new_page, shot  # noqa: F401  (chromium is a fixture)
from conftest import _start, unique

PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def closed(tmp_path_factory):
    """A hub as installed: sign-up off."""
    server = _start(tmp_path_factory, "trove-signin")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def open_hub(tmp_path_factory):
    """A hub that lets visitors register, with a small sign-in budget so the limit shows."""
    server = _start(tmp_path_factory, "trove-signup", {"TROVE_AUTH_ALLOW_SIGNUP": "true",
                                                       "TROVE_AUTH_FAILURE_BURST": "12",
                                                       "TROVE_AUTH_FAILURE_REFILL_SECS": "600"})
    yield server
    server.stop()


def token_form(page, token: str) -> None:
    page.goto("/login")
    page.click("details.token-login summary")
    page.fill("form.login-token input[name=token]", token)
    page.click("form.login-token button[type=submit]")


def cookies(page) -> set[str]:
    return {c["name"] for c in page.context.cookies()}


def test_sign_in_with_a_write_token(closed, chromium):
    user = unique("tokie")
    closed.create_user(user)
    token = closed.create_token(user, role="write", name="laptop")
    page = new_page(chromium, closed.url)
    page.goto("/login?next=/settings/tokens")
    assert page.locator("a[href='/signup']").count() == 0, "no sign-up link when it is off"
    shot(page, "login")
    page.click("details.token-login summary")
    page.fill("form.login-token input[name=token]", token)
    page.click("form.login-token button[type=submit]")
    page.wait_for_url(re.compile(r"/settings/tokens$"))
    page.wait_for_selector(f"header .signed-in:has-text('{user}')")
    assert page.locator("tr.token[data-name='laptop']").count() == 1
    assert "trove_session" in cookies(page)


@pytest.mark.parametrize("kind", ["unknown", "expired", "revoked", "read", "fine-grained"])
def test_a_token_that_cannot_sign_in_shows_the_form_again(closed, chromium, kind):
    user = unique("tokno")
    closed.create_user(user)
    if kind == "unknown":
        token, why = "hf_" + "x" * 34, "not valid"
    elif kind == "expired":
        token = closed.admin_cli("token", "create", "--user", user, "--role", "write",
                                 "--expires-in", "1s").strip()
        time.sleep(1.5)
        why = "not valid"
    elif kind == "revoked":
        token = closed.create_token(user, role="write", name="gone")
        closed.admin_cli("token", "revoke", user, "--name", "gone")
        why = "not valid"
    elif kind == "read":
        token, why = closed.create_token(user, role="read"), "read token cannot sign you in"
    else:
        token = closed.admin_cli("token", "create", "--user", user, "--role", "fine-grained",
                                 "--namespace", user, "--permission", "repo.content.read").strip()
        why = "fine-grained token cannot sign you in"
    page = new_page(chromium, closed.url)
    answer = []
    page.on("response", lambda r: answer.append(r.status) if r.url.endswith("/login/token") else None)
    token_form(page, token)
    page.wait_for_selector("form.login-token .error")
    assert why in page.locator("form.login-token .error").inner_text()
    assert answer == [401], answer
    assert page.locator("details.token-login").get_attribute("open") is not None, "the form stays open"
    assert "trove_session" not in cookies(page), "no session"
    assert page.locator("header .signed-in").count() == 0
    if kind == "read":
        shot(page, "login-token-refused")


def test_sign_in_posts_need_the_forms_token(closed):
    user = unique("tokcs")
    closed.create_user(user)
    token = closed.create_token(user, role="write")
    origin = {"origin": closed.url}
    with httpx.Client(base_url=closed.url, follow_redirects=False, timeout=60) as browser:
        # Straight to the post, as a forging page would: no form cookie, no token.
        forged = browser.post("/login/token", data={"token": token}, headers=origin)
        assert forged.status_code == 403 and "set-cookie" not in forged.headers
        assert browser.post("/login", data={"username": user, "password": "x" * 10},
                            headers=origin).status_code == 403
        form = browser.get("/login")
        assert "trove_form=" in form.headers["set-cookie"] and "HttpOnly" in form.headers["set-cookie"]
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        assert browser.post("/login/token", data={"token": token, "csrf": "0" * 64},
                            headers=origin).status_code == 403, "a wrong token is refused"
        assert browser.post("/login/token", data={"token": token, "csrf": csrf},
                            headers={"origin": "http://evil.example"}).status_code == 403
        ok = browser.post("/login/token", data={"token": token, "csrf": csrf, "next": "//evil.example"},
                          headers=origin)
        assert ok.status_code == 303 and ok.headers["location"] == "/models"
        assert "trove_session=" in ok.headers["set-cookie"]
        assert f">{user}<" in browser.get("/models").text.replace(" ", "")
    # Another browser's form token does not fit this browser's cookie.
    with httpx.Client(base_url=closed.url, follow_redirects=False, timeout=60) as other:
        other.get("/login")
        assert other.post("/login/token", data={"token": token, "csrf": csrf},
                          headers=origin).status_code == 403


def test_signup_is_a_404_when_off(closed, chromium):
    page = new_page(chromium, closed.url)
    response = page.goto("/signup")
    assert response.status == 404 and response.headers["content-type"].startswith("text/html")
    posted = httpx.post(f"{closed.url}/signup", data={"username": "mallory", "password": PASSWORD,
                                                      "confirm": PASSWORD}, headers={"origin": closed.url})
    assert posted.status_code == 404
    assert httpx.get(f"{closed.url}/api/users/mallory/overview").status_code == 404


def test_sign_up_in_the_browser(open_hub, chromium):
    name = unique("newbie")
    page = new_page(chromium, open_hub.url)
    page.goto("/login")
    page.click("a[href='/signup']")
    page.wait_for_url(re.compile(r"/signup$"))
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=confirm]", PASSWORD)
    shot(page, "signup")
    page.click("form.signup button[type=submit]")
    page.wait_for_url(re.compile(rf"/{name}$"))
    page.wait_for_selector(f"header .signed-in:has-text('{name}')")
    # The new account works like any other: a token from the tokens page reaches the API.
    page.goto("/settings/tokens")
    page.fill("form.stack input[name=name]", "first")
    page.check("input[name=role][value=write]")
    page.click("form.stack button[type=submit]")
    secret = page.locator("#new-secret").inner_text().strip()
    who = httpx.get(f"{open_hub.url}/api/whoami-v2", headers={"authorization": f"Bearer {secret}"})
    assert who.status_code == 200 and who.json()["name"] == name
    # The same name again, from another browser: refused in the form, nothing signed in.
    again = new_page(chromium, open_hub.url)
    again.goto("/signup")
    again.fill("input[name=username]", name)
    again.fill("input[name=password]", PASSWORD)
    again.fill("input[name=confirm]", PASSWORD)
    again.click("form.signup button[type=submit]")
    again.wait_for_selector("form.signup .error")
    assert "is taken" in again.locator("form.signup .error").inner_text()
    assert again.locator("input[name=username]").input_value() == name
    assert "trove_session" not in cookies(again)


def test_signup_refuses_bad_names_and_weak_passwords_then_rate_limits(open_hub):
    origin = {"origin": open_hub.url}
    with httpx.Client(base_url=open_hub.url, follow_redirects=False, timeout=60) as browser:
        csrf = browser.get("/signup").text.split('name="csrf" value="')[1].split('"')[0]

        def post(username, password=PASSWORD, confirm=None):
            return browser.post("/signup", headers=origin, data={
                "username": username, "password": password,
                "confirm": password if confirm is None else confirm, "csrf": csrf})

        assert browser.post("/signup", headers=origin, data={
            "username": unique("nocsrf"), "password": PASSWORD, "confirm": PASSWORD}).status_code == 403
        for bad, why in [("api", "reserved"), ("signup", "reserved"), ("-dash", "cannot start"),
                         ("a/b", "cannot be used"), ("x" * 97, "cannot be used")]:
            refused = post(bad)
            assert refused.status_code == 400 and why in refused.text, (bad, refused.text[:300])
            assert "set-cookie" not in refused.headers or "trove_session" not in refused.headers["set-cookie"]
        short = post(unique("shorty"), "short")
        assert short.status_code == 400 and "at least 8 characters" in short.text
        differ = post(unique("differ"), PASSWORD, PASSWORD + "!")
        assert differ.status_code == 400 and "differ" in differ.text
        # The names refused above were never created.
        assert httpx.get(f"{open_hub.url}/api/users/-dash/overview").status_code in (400, 404)
        # Every attempt spends the address's budget (12 here): it ends in 429 with Retry-After.
        statuses = []
        for _ in range(20):
            answer = post("api")
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                assert int(answer.headers["retry-after"]) > 0 and "Too many attempts" in answer.text
                break
        assert statuses[-1] == 429, statuses


def signed_in_with(server, token: str, next_: str | None = None):
    """A cookie-keeping client signed in through the token form; and the sign-in's answer."""
    browser = httpx.Client(base_url=server.url, follow_redirects=False, timeout=60)
    form = browser.get("/login")
    csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
    data = {"token": token, "csrf": csrf, **({"next": next_} if next_ else {})}
    return browser, browser.post("/login/token", data=data, headers={"origin": server.url})


def test_a_token_session_ends_with_its_token_and_mints_no_tokens(closed):
    user = unique("toksess")
    closed.create_user(user)
    token = closed.create_token(user, role="write", name="brief")
    browser, ok = signed_in_with(closed, token)
    assert ok.status_code == 303, ok.text
    assert browser.get("/api/whoami-v2").json()["name"] == user
    # The session stands for the token: it may not make one that would outlive it.
    page = browser.get("/settings/tokens")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    minted = browser.post("/settings/tokens", data={"csrf": csrf, "name": "persist", "role": "write"},
                          headers={"origin": closed.url})
    assert minted.status_code == 403, minted.text[:300]
    assert "persist" not in closed.admin_cli("token", "list", user)
    # Revoking the token ends the session at once.
    closed.admin_cli("token", "revoke", user, "--name", "brief")
    assert browser.get("/api/whoami-v2").status_code == 401


def test_a_new_password_ends_the_users_sessions(closed):
    user = unique("newpw")
    closed.create_user(user)
    token = closed.create_token(user, role="write", name="t")
    browser, ok = signed_in_with(closed, token)
    assert ok.status_code == 303 and browser.get("/api/whoami-v2").status_code == 200
    p = subprocess.run([str(closed.binary), "user", "set-password", user, "--data-dir",
                        str(closed.data_dir)], input="a brand new password\n", text=True,
                       capture_output=True, timeout=60, env=closed.cli_env())
    assert p.returncode == 0, p.stderr
    assert browser.get("/api/whoami-v2").status_code == 401


def test_sign_in_redirects_only_to_this_hub(closed):
    user = unique("nextu")
    closed.create_user(user)
    token = closed.create_token(user, role="write")
    for sneaky in ("/\t/evil.example/x", "/\n/evil.example", "/\\evil.example", "//evil.example"):
        browser, ok = signed_in_with(closed, token, sneaky)
        assert ok.status_code == 303 and ok.headers["location"] == "/models", (sneaky, ok.headers)
    browser, ok = signed_in_with(closed, token, "/settings/tokens")
    assert ok.headers["location"] == "/settings/tokens"


def test_the_json_login_refuses_other_sites(closed):
    user = unique("jsonlogin")
    closed.create_user(user)
    p = subprocess.run([str(closed.binary), "user", "set-password", user, "--data-dir",
                        str(closed.data_dir)], input="correct horse battery\n", text=True,
                       capture_output=True, timeout=60, env=closed.cli_env())
    assert p.returncode == 0, p.stderr
    body = '{"username": "%s", "password": "correct horse battery", "x": "="}' % user
    with httpx.Client(base_url=closed.url, follow_redirects=False, timeout=60) as http:
        # A form of another site posting text/plain that reads as JSON: no session planted.
        for headers in ({"origin": "http://evil.example", "content-type": "text/plain"},
                        {"sec-fetch-site": "cross-site", "content-type": "text/plain"}):
            r = http.post("/api/login", content=body, headers=headers)
            assert r.status_code == 403 and "set-cookie" not in r.headers, (headers, r.status_code)
            assert r.headers.get("x-error-message"), r.headers
        # An API client (no Origin) and the hub's own pages still sign in.
        for headers in ({}, {"origin": closed.url}):
            r = http.post("/api/login", content=body, headers={"content-type": "application/json", **headers})
            assert r.status_code == 200 and "trove_session=" in r.headers["set-cookie"], r.text
