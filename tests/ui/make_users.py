"""Arrange a Director database for browser tests, in its own process: `python -m tests.ui.make_users
STATE_DIR NAME:PASSWORD[:admin] ...` migrates, creates the users and prints a JSON map of an API token
per user. The test process never sets Django up itself: a pytest session has one Django settings, and the
API tests' state directory may be it."""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    os.environ["DIRECTOR_STATE_DIR"] = sys.argv[1]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ui.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from api.auth import ensure_admin_group, issue_token

    call_command("migrate", interactive=False, verbosity=0)
    tokens = {}
    for spec in sys.argv[2:]:
        name, password, *role = spec.split(":")
        user = User.objects.create_user(name, password=password)
        if role == ["admin"]:
            user.groups.add(ensure_admin_group())
        tokens[name] = issue_token(user, "ui-tests")[1]
    print(json.dumps(tokens))


if __name__ == "__main__":
    main()
