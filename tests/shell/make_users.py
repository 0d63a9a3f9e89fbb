"""Make the test users in a state directory's database and print a token for each, as JSON.

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
    tokens = {}
    for name in sys.argv[1:]:
        user = User.objects.filter(username=name).first()
        if user is None:
            user = User.objects.create_user(name, password=f"{name}-password")
        if name == "admin":
            user.groups.add(ensure_admin_group())
        tokens[name] = issue_token(user, "tests")[1]
    print(json.dumps(tokens))


if __name__ == "__main__":
    main()
