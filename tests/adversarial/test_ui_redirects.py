"""Open redirects: a link that logs a person in and then sends them off-site.

An attacker mails ``https://our-peer/login?next=<target>``; after a real login the UI
redirects to ``next``. Every redirect whose target the request supplies (login's ``next``,
the basket forms' ``back``, the not-logged-in bounce to ``/login?next=``) must stay on this
site: whatever an attacker puts there lands on the default page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mydrive.ui.app import create_app
from mydrive.ui.settings import UiSettings
from tests.clientnet import ClientNet, client_net
from tests.unit.test_ui import upload

PASS = "correct horse battery staple"

# Each is what the form field or query parameter holds once decoded.
OFF_SITE = [
    "//evil.example",
    "/\t/evil.example",  # next=/%09/evil.example: browsers drop the tab -> //evil.example
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/\\evil.example",  # browsers read \ as /
    "/\\/evil.example",
    "\\\\evil.example",
    "https://evil.example",
    "http:evil.example",
    "javascript:alert(1)",
    " //evil.example",
    "\t//evil.example",
    "/ /evil.example",
    "///evil.example",
    "/%2F/evil.example",  # decoded once more by anything downstream -> //evil.example
    "/%5Cevil.example",
    "/%09/evil.example",
    "/\x00/evil.example",
    "/\u3000/evil.example",
    "\uff0f\uff0fevil.example",  # fullwidth solidus
    "evil.example",
    "/" + "a" * 600,
]
LOCAL = ["/files", "/basket", "/jobs/0123abcd", "/files?folder=/docs/a%20b"]


@pytest.fixture
def net(tmp_path: Path) -> ClientNet:
    return client_net(tmp_path, 4)


def _client(net: ClientNet) -> Any:
    app = create_app(net.dirs[0].root, client=net.client(0), clock=net.clock,
                     settings=UiSettings())
    app.testing = True
    return app.test_client()


def _token(client: Any, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found
    return found.group(1)


def _signed_up(net: ClientNet) -> tuple[Any, str]:
    c = _client(net)
    tok = _token(c, "/welcome")
    r = c.post("/welcome", data={"csrf_token": tok, "user_name": "alice",
                                 "passphrase": PASS, "confirm": PASS})
    assert r.status_code == 303
    return c, tok


def _login_lands_on(c: Any, tok: str, target: str) -> str:
    r = c.post("/login", data={"csrf_token": tok, "user_name": "alice", "passphrase": PASS,
                               "next": target})
    assert r.status_code == 303, r.text
    return str(r.headers["Location"])


def test_login_next_never_leaves_the_site(net: ClientNet) -> None:
    c, tok = _signed_up(net)
    for target in OFF_SITE:
        assert _login_lands_on(c, tok, target) == "/files", repr(target)
    for target in LOCAL:
        assert _login_lands_on(c, tok, target) == target


def test_login_page_never_carries_an_off_site_next(net: ClientNet) -> None:
    """The GET form copies ``next`` into a hidden field; only a local one gets there."""
    c = _client(net)
    for target in OFF_SITE:
        page = c.get("/login", query_string={"next": target}).get_data(as_text=True)
        hidden = re.search(r'name="next" value="([^"]*)"', page)
        assert hidden and hidden.group(1) == "/files", repr(target)


def test_basket_back_never_leaves_the_site(net: ClientNet) -> None:
    c, tok = _signed_up(net)
    for target in OFF_SITE:
        for form in ("/basket/clear", "/basket/remove"):
            r = c.post(form, data={"csrf_token": tok, "path": "/a", "back": target})
            assert r.status_code == 303 and r.headers["Location"] == "/files", \
                (form, repr(target))
    r = c.post("/basket/clear", data={"csrf_token": tok, "back": "/basket"})
    assert r.headers["Location"] == "/basket"
    assert upload(c, tok, "/", "a.bin", b"a" * 1000)["state"] == "done"  # add needs a file
    for target in OFF_SITE:
        r = c.post("/basket/add", data={"csrf_token": tok, "path": "/a.bin", "kind": "file",
                                        "back": target})
        assert r.status_code == 303 and r.headers["Location"] == "/files", repr(target)


def test_login_bounce_quotes_the_path(net: ClientNet) -> None:
    """Not logged in: ``/login?next=<path>``, the path quoted so it can't add parameters,
    and what login reads back from it is the same local path."""
    c = _client(net)
    r = c.get("/jobs/x%26next=https:evil.example%3F")
    assert r.status_code == 303
    location = urlsplit(r.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == ["/jobs/x&next=https:evil.example?"]
