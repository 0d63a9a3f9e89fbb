"""User operations for administrators (api/users.py): what the UI's admin pages call."""

from __future__ import annotations

import pytest
from api_helpers import SITES


def _principal(name: str):
    from django.contrib.auth.models import User

    from api.auth import principal_for

    return principal_for(User.objects.get(username=name))


def test_only_admins_manage_users(api):
    from api import users
    from api.errors import ApiError

    with pytest.raises(ApiError) as refused:
        users.create_user(_principal("alice"), "mallory")
    assert refused.value.code == 403 and "only administrators" in refused.value.message


def test_create_disable_reset_and_make_admin(api):
    from django.contrib.auth.models import User

    from api import users
    from api.auth import issue_token
    from api.errors import ApiError

    admin = _principal("admin")
    info, password = users.create_user(admin, "dora")
    assert info.is_active and not info.is_admin and len(password) >= 16
    with pytest.raises(ApiError) as taken:
        users.create_user(admin, "dora")
    assert taken.value.code == 409
    with pytest.raises(ApiError) as bad:
        users.create_user(admin, "Dora Smith")
    assert bad.value.code == 422 and bad.value.causes[0].field == "username"
    with pytest.raises(ApiError) as weak:
        users.create_user(admin, "eve", "short")
    assert weak.value.code == 422 and weak.value.causes[0].field == "password"

    token = issue_token(User.objects.get(username="dora"), "t")[1]
    users.set_active(admin, "dora", False)
    import httpx

    refused = httpx.get(f"{api.url}{SITES}", headers={"Authorization": f"Bearer {token}"}, verify=api.tls)
    assert refused.status_code == 401 and "disabled" in refused.json()["message"]
    users.set_active(admin, "dora", True)

    new_password = users.reset_password(admin, "dora")
    assert new_password != password and User.objects.get(username="dora").check_password(new_password)
    assert users.set_admin(admin, "dora", True).is_admin
    assert not users.set_admin(admin, "dora", False).is_admin
    with pytest.raises(ApiError) as yourself:
        users.set_active(admin, "admin", False)
    assert yourself.value.code == 409
