"""Credentials that end: failed logins wait longer and longer, tokens expire, a token made with a token dies
with it, and a revocation or a disabled user is refused by every server process at the next request.

Several server processes share one database here, as production's do; the test process changes users and
tokens through the ORM, as `manage.py` or another process would, so no signal reaches the servers.
"""

from __future__ import annotations

import itertools
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.api.api_helpers import SITES, site_doc

REPO = Path(__file__).resolve().parents[2]
LOGIN = "/apis/auth.director.io/v1/login"
TOKENS = "/apis/auth.director.io/v1/tokens"
AUTHENTICATE = "/shell-server/v1/authenticate"
# Production's mechanism with waits short enough for a test: 3 free failures per user name and 6 per
# address, then 1 s doubled per failure up to 4 s.
QUICK_WAITS = {
    "DIRECTOR_LOGIN_FREE_FAILURES": "3",
    "DIRECTOR_LOGIN_FREE_FAILURES_PER_ADDRESS": "6",
    "DIRECTOR_LOGIN_DELAY_SECONDS": "1",
    "DIRECTOR_LOGIN_MAX_DELAY_SECONDS": "4",
}
# Waits that no busy machine outlasts between two requests, for tests that expect a 429 right away.
LONG_WAITS = QUICK_WAITS | {"DIRECTOR_LOGIN_DELAY_SECONDS": "60", "DIRECTOR_LOGIN_MAX_DELAY_SECONDS": "120"}

_addresses = itertools.count(1)


def fresh_address() -> str:
    """A client address no other test uses. The servers take it from X-Forwarded-For, as uvicorn does for a
    proxy on loopback."""
    number = next(_addresses)
    return f"10.77.{number // 256}.{number % 256}"


def make_user(name: str, password: str | None = None):
    from django.contrib.auth.models import User

    return User.objects.create_user(name, password=password)


def token_of(user, **options) -> str:
    from api.auth import issue_token

    return issue_token(user, "tests", **options)[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# The context trusting the servers' CA (all of them share the state dir, and so the CA): set per test.
TLS: list[ssl.SSLContext] = []


@pytest.fixture(autouse=True)
def _trust_the_servers(api) -> None:
    TLS[:] = [api.tls]


def login(url: str, username: str, password: str, address: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    return httpx.post(f"{url}{LOGIN}", auth=(username, password), headers=headers, timeout=60, verify=TLS[0])


def first_not_throttled(
    send: Callable[[], httpx.Response], deadline: float = 60
) -> tuple[httpx.Response, float]:
    """Send until the answer is not 429, checking that each 429 says when to come back: that answer, and
    when (time.monotonic) its request was sent."""
    give_up = time.monotonic() + deadline
    while True:
        sent = time.monotonic()
        response = send()
        if response.status_code != 429:
            return response, sent
        assert 1 <= int(response.headers["Retry-After"]) <= 120
        assert response.json()["details"]["retryAfterSeconds"] == int(response.headers["Retry-After"])
        assert "try again in" in response.json()["message"]
        assert time.monotonic() < give_up, f"still 429 after {deadline} s: {response.text}"
        time.sleep(0.05)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture(scope="module")
def quick(more_servers) -> tuple[str, str]:
    """Two server processes with QUICK_WAITS on one database: counts and waits must be shared."""
    return more_servers(QUICK_WAITS), more_servers(QUICK_WAITS)


@pytest.fixture(scope="module")
def strict(more_servers) -> tuple[str, str]:
    return more_servers(LONG_WAITS), more_servers(LONG_WAITS)


@pytest.fixture(scope="module")
def second_server(more_servers) -> str:
    """Another process beside `api`, with the default settings."""
    return more_servers(None)


# ---- failed logins ----------------------------------------------------------------------------------


def test_wrong_passwords_wait_longer_and_longer_and_a_right_one_waits_too(quick):
    make_user("guessed", "guessed-password")
    servers = itertools.cycle(quick)

    def wrong() -> httpx.Response:
        # From a new address each time: the user name alone is counted, as for an attacker with many.
        return login(next(servers), "guessed", "wrong", fresh_address())

    free = [wrong(), wrong()]
    sent = time.monotonic()
    free.append(wrong())
    assert [answer.status_code for answer in free] == [401, 401, 401]
    assert "must wait" not in free[1].json()["message"]
    assert "must wait 1 s" in free[2].json()["message"]

    for stated_wait, next_wait in [(1, 2), (2, 4), (4, 4)]:
        answer, answer_sent = first_not_throttled(wrong)
        # The wait runs from the end of the failure before, which came after that failure was `sent`.
        assert time.monotonic() - sent >= stated_wait
        assert answer.status_code == 401, answer.text
        assert f"must wait {next_wait} s" in answer.json()["message"]
        sent = answer_sent

    # Six failures so far; during the 4 s wait fourteen more guesses and the right password are all
    # refused before the password is looked at.
    during = [wrong() for _ in range(14)] + [login(quick[0], "guessed", "guessed-password", fresh_address())]
    assert {answer.status_code for answer in during} == {429}, [a.text for a in during]
    assert 'for the user name "guessed"' in during[-1].json()["message"]
    assert 1 <= int(during[-1].headers["Retry-After"]) <= 4

    accepted, _ = first_not_throttled(lambda: login(quick[1], "guessed", "guessed-password", fresh_address()))
    assert time.monotonic() - sent >= 4
    assert accepted.status_code == 201, accepted.text
    # A right password starts the user name's count over.
    again = wrong()
    assert again.status_code == 401 and "must wait" not in again.json()["message"]


def test_concurrent_guesses_cannot_slip_in_before_the_first_ones_are_counted(strict):
    make_user("raced", "raced-password")
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda n: login(strict[n % 2], "raced", "guess", fresh_address()), range(20)))
    codes = [answer.status_code for answer in answers]
    assert codes.count(401) == 3 and codes.count(429) == 17, codes


def test_many_user_names_tried_from_one_address_wait_as_one(strict):
    make_user("sprayed", "sprayed-password")
    address = fresh_address()
    sprayed = [login(strict[n % 2], f"nobody-{n}", "guess", address) for n in range(6)]
    assert [answer.status_code for answer in sprayed] == [401] * 6
    refused = login(strict[0], "sprayed", "sprayed-password", address)
    assert refused.status_code == 429
    assert f"from {address}" in refused.json()["message"]
    # The user name itself is not suspect: from elsewhere it logs in.
    assert login(strict[1], "sprayed", "sprayed-password", fresh_address()).status_code == 201


def test_the_shell_server_s_password_checks_count_with_the_api_s(api, strict):
    make_user("sshed", "sshed-password")
    shell = httpx.Client(verify=api.tls, base_url=strict[0], headers=bearer(api.tokens["shell"]), timeout=60)

    def authenticate(password: str, address: object) -> httpx.Response:
        return shell.post(
            AUTHENTICATE, json={"username": "sshed", "password": password, "clientAddress": address}
        )

    with shell:
        bad_address = authenticate("sshed-password", "the internet")
        assert bad_address.status_code == 422
        assert bad_address.json()["details"]["causes"][0]["field"] == "clientAddress"
        assert authenticate("sshed-password", "2001:db8::7").status_code == 200
        assert [authenticate("guess", fresh_address()).status_code for _ in range(3)] == [401] * 3
        during = authenticate("sshed-password", fresh_address())
        assert during.status_code == 429 and 'for the user name "sshed"' in during.json()["message"]
        # One count for both ways in: the API's login waits as well.
        assert login(strict[1], "sshed", "sshed-password", fresh_address()).status_code == 429

        # Addresses count per client, as the shell server reports it; an IPv6 client by its /64.
        for n in range(6):
            answer = shell.post(
                AUTHENTICATE,
                json={
                    "username": f"nobody-ssh-{n}",
                    "password": "guess",
                    "clientAddress": f"2001:db8:5::{n}",
                },
            )
            assert answer.status_code == 401
        make_user("neighbour", "neighbour-password")
        neighbour = shell.post(
            AUTHENTICATE,
            json={
                "username": "neighbour",
                "password": "neighbour-password",
                "clientAddress": "2001:db8:5::99",
            },
        )
        assert neighbour.status_code == 429 and "from 2001:db8:5::/64" in neighbour.json()["message"]


# ---- token lifetimes --------------------------------------------------------------------------------


def test_a_token_ends_after_its_lifetime_and_says_to_log_in_again(api):
    from api.models import ApiToken

    before = datetime.now(UTC)
    logged_in = login(api.url, "alice", "alice-password")
    assert logged_in.status_code == 201, logged_in.text
    expires = parse_time(logged_in.json()["expires"])
    assert before + timedelta(days=30) <= expires <= datetime.now(UTC) + timedelta(days=30)

    with httpx.Client(
        verify=api.tls, base_url=api.url, headers=bearer(logged_in.json()["token"]), timeout=60
    ) as parent:
        short = parent.post(TOKENS, json={"name": "short", "expiresInSeconds": 1})
        assert short.status_code == 201, short.text
        assert parse_time(short.json()["expires"]) <= datetime.now(UTC) + timedelta(seconds=1)
        listed = {item["name"]: item for item in parent.get(TOKENS).json()["items"]}
        assert listed["dirctl"]["expires"] == logged_in.json()["expires"]

    deadline = time.monotonic() + 30
    with httpx.Client(
        verify=api.tls, base_url=api.url, headers=bearer(short.json()["token"]), timeout=60
    ) as client:
        while (answer := client.get(SITES)).status_code == 200:
            assert time.monotonic() < deadline, "the 1 s token still works after 30 s"
            time.sleep(0.05)
    assert answer.status_code == 401
    assert "expired" in answer.json()["message"] and "dirctl login" in answer.json()["message"]

    # A lifetime ended in the database (a token older than its lifetime) is refused at the next request.
    ApiToken.objects.filter(pk=logged_in.json()["id"]).update(
        expires=datetime.now(UTC) - timedelta(seconds=1)
    )
    with httpx.Client(
        verify=api.tls, base_url=api.url, headers=bearer(logged_in.json()["token"]), timeout=60
    ) as client:
        ended = client.get(SITES)
    assert ended.status_code == 401 and "expired" in ended.json()["message"]


def test_a_token_asks_for_a_lifetime_within_the_longest_and_within_its_parent(api):
    with api.client("alice") as alice:
        longest = 30 * 86400
        for asked in (longest + 1, 0, "1h", True, 1.5):
            refused = alice.post(TOKENS, json={"name": "long", "expiresInSeconds": asked})
            assert refused.status_code == 422, (asked, refused.text)
            assert refused.json()["details"]["causes"][0]["field"] == "expiresInSeconds"
            assert str(longest) in refused.json()["message"]
        unknown = alice.post(TOKENS, json={"name": "typo", "expiresIn": 60})
        assert unknown.status_code == 422
        assert unknown.json()["details"]["causes"][0]["field"] == "expiresIn"
        parent = alice.post(TOKENS, json={"name": "minute", "expiresInSeconds": 60})
        assert parent.status_code == 201

    with httpx.Client(
        verify=api.tls, base_url=api.url, headers=bearer(parent.json()["token"]), timeout=60
    ) as minute:
        outliving = minute.post(TOKENS, json={"name": "hour", "expiresInSeconds": 3600})
        assert outliving.status_code == 422
        assert "no later than" in outliving.json()["message"]
        child = minute.post(TOKENS, json={"name": "child"})
    assert child.status_code == 201
    assert child.json()["expires"] == parent.json()["expires"]
    assert child.json()["parent"] == parent.json()["id"]


def test_tokens_made_before_expiry_existed_end_one_lifetime_after_the_upgrade(tmp_path):
    """The migration runs in a process of its own, on a database of its own."""
    script = """
import json, os
os.environ["DJANGO_SETTINGS_MODULE"] = "ui.settings"
import django
django.setup()
from django.core.management import call_command
from django.db import connection
call_command("migrate", verbosity=0)
call_command("migrate", "api", "0001", verbosity=0)
from django.contrib.auth.models import User
user = User.objects.create_user("old-timer")
with connection.cursor() as cursor:
    cursor.execute(
        "INSERT INTO api_apitoken (user_id, name, secret_hash, prefix, scope, created)"
        " VALUES (%s, 'old', 'ab', 'dir_old', '', '2020-01-01 00:00:00')",
        [user.pk],
    )
call_command("migrate", verbosity=0)
from api.models import ApiToken
print(json.dumps(ApiToken.objects.get(name="old").expires.isoformat()))
"""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIRECTOR_")} | {
        "DIRECTOR_STATE_DIR": str(tmp_path),
        "DIRECTOR_TOKEN_TTL_DAYS": "7",
        "PYTHONPATH": str(REPO),
    }
    before = datetime.now(UTC)
    migrated = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=environment, capture_output=True, text=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr
    expires = parse_time(json.loads(migrated.stdout.strip().splitlines()[-1]))
    assert before + timedelta(days=7) <= expires <= datetime.now(UTC) + timedelta(days=7)


# ---- tokens made with tokens ------------------------------------------------------------------------


def test_login_takes_a_password_never_a_token(api):
    from api.models import ApiToken

    count = ApiToken.objects.filter(user__username="alice").count()
    with api.client("alice") as alice:
        refused = alice.post(LOGIN)
    assert refused.status_code == 401
    assert "user name and password" in refused.json()["message"] and TOKENS in refused.json()["message"]
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert ApiToken.objects.filter(user__username="alice").count() == count


def test_revoking_a_token_revokes_every_token_made_with_it(api):
    logged_in = login(api.url, "bob", "bob-password").json()
    with httpx.Client(
        verify=api.tls, base_url=api.url, headers=bearer(logged_in["token"]), timeout=60
    ) as parent:
        child = parent.post(TOKENS, json={"name": "child"}).json()
    with httpx.Client(
        verify=api.tls, base_url=api.url, headers=bearer(child["token"]), timeout=60
    ) as made_by_child:
        grandchild = made_by_child.post(TOKENS, json={"name": "grandchild"}).json()
    assert (child["parent"], grandchild["parent"]) == (logged_in["id"], child["id"])

    with api.client("bob") as bob:
        assert bob.delete(f"{TOKENS}/{logged_in['id']}").status_code == 200
        # Bob's other tokens are not the revoked one's: they keep working.
        assert bob.get(SITES).status_code == 200
    for token in (logged_in, child, grandchild):
        with httpx.Client(
            verify=api.tls, base_url=api.url, headers=bearer(token["token"]), timeout=60
        ) as client:
            answer = client.get(SITES)
        assert answer.status_code == 401 and "revoked" in answer.json()["message"], token["id"]


# ---- every process, at once -------------------------------------------------------------------------


def test_a_user_disabled_in_the_database_is_refused_by_every_process_at_the_next_request(api, second_server):
    from django.contrib.auth.models import User

    token = token_of(make_user("leaving"))
    servers = [
        httpx.Client(verify=api.tls, base_url=url, headers=bearer(token), timeout=60)
        for url in (api.url, second_server)
    ]
    try:
        # Each process has just let the token in.
        assert [server.get(SITES).status_code for server in servers] == [200, 200]
        User.objects.filter(username="leaving").update(is_active=False)
        refused = [server.get(SITES) for server in servers]
        assert [answer.status_code for answer in refused] == [401, 401]
        assert 'user "leaving" is disabled' in refused[0].json()["message"]
        User.objects.filter(username="leaving").update(is_active=True)
        assert [server.get(SITES).status_code for server in servers] == [200, 200]
    finally:
        for server in servers:
            server.close()


def test_an_admin_removed_from_the_admins_is_an_ordinary_user_at_the_next_request(api, second_server):
    from api.auth import ensure_admin_group

    demoted = make_user("demoted")
    demoted.groups.add(ensure_admin_group())
    with api.client("bob") as bob:
        assert bob.post(SITES, json=site_doc("bobs-own", owners=["bob"])).status_code == 201
    with httpx.Client(
        verify=api.tls, base_url=second_server, headers=bearer(token_of(demoted)), timeout=60
    ) as client:
        assert client.get(f"{SITES}/bobs-own").status_code == 200
        demoted.groups.remove(ensure_admin_group())
        assert client.get(f"{SITES}/bobs-own").status_code in (403, 404)


def test_a_token_revoked_through_one_process_is_refused_by_another_at_once(api, second_server):
    token = login(api.url, "alice", "alice-password").json()
    with httpx.Client(
        verify=api.tls, base_url=second_server, headers=bearer(token["token"]), timeout=60
    ) as elsewhere:
        assert elsewhere.get(SITES).status_code == 200
        with api.client("alice") as alice:
            assert alice.delete(f"{TOKENS}/{token['id']}").status_code == 200
        refused = elsewhere.get(SITES)
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]
