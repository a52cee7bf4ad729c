"""RolePolicy: owner, named users, hub groups, hub admins and the custom hub scope."""

from __future__ import annotations

from bodhi_jupyter.auth.roles import HUB_ADMIN_SCOPE, RolePolicy


def test_a_server_owner_is_admin_and_others_get_the_default():
    roles = RolePolicy(owner="alice")
    assert roles.role_of("alice") == "admin"
    assert roles.role_of("bob") == "user"
    # a hub admin is nobody special in someone's own server unless configured
    assert roles.role_of("bob", hub_admin=True) == "user"


def test_shared_service_has_no_owner_and_admins_come_from_the_hub():
    roles = RolePolicy(owner="svc", has_owner=False, hub_admin_role="admin",
                       group_roles={"bodhi-admins": "admin", "staff": "power_user"},
                       user_roles={"dora": "power_user"})
    assert roles.role_of("svc") == "user"
    assert roles.role_of("ann", hub_admin=True) == "admin"
    assert roles.role_of("bob", ["bodhi-admins"]) == "admin"
    assert roles.role_of("bob", ["staff"]) == "power_user"
    assert roles.role_of("bob", ["staff", "bodhi-admins"]) == "admin"
    assert roles.role_of("cid", scopes=[HUB_ADMIN_SCOPE, "access:services"]) == "admin"
    assert roles.role_of("cid", scopes=["access:services!service=bodhi"]) == "user"
    assert roles.role_of("dora", hub_admin=True) == "power_user"  # named: config wins


def test_the_admin_scope_can_be_renamed_or_switched_off():
    assert RolePolicy(admin_scope="custom:llm:admin", has_owner=False).role_of(
        "cid", scopes=["custom:llm:admin"]) == "admin"
    assert RolePolicy(admin_scope="", has_owner=False).role_of(
        "cid", scopes=[HUB_ADMIN_SCOPE]) == "user"
