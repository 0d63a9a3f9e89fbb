"""Make the test users in a state directory's database and print a token for each, as JSON; or, with
`session NAME`, log NAME in as the web UI would and print the session cookie's value.

Run as a child process (`python -m tests.shell.make_users`, DIRECTOR_STATE_DIR set): the test process
itself may have Django set up for another state directory already (tests/api).
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from api.auth import ensure_admin_group, issue_token

    call_command("migrate", interactive=False, verbosity=0)
    if sys.argv[1:2] == ["session"]:
        print(login_session(User.objects.get(username=sys.argv[2])))
        return
    tokens = {}
    for name in sys.argv[1:]:
        user = User.objects.filter(username=name).first()
        if user is None:
            user = User.objects.create_user(name, password=f"{name}-password")
        if name == "admin":
            user.groups.add(ensure_admin_group())
        tokens[name] = issue_token(user, "tests")[1]
    print(json.dumps(tokens))


def login_session(user: object) -> str:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    assert isinstance(user, User)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return str(session.session_key)


if __name__ == "__main__":
    main()
