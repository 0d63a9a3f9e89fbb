from __future__ import annotations

from django.urls import path

from api import (
    audit,
    files,
    gitops_views,
    hooks,
    kube,
    secrets,
    shell_server,
    sshkeys,
    streams,
    user_views,
    views,
)
from api.views import endpoint

SITES = "apis/director.io/v1/sites"
GITSOURCES = "apis/director.io/v1/gitsources"

# What kubectl asks besides the resources themselves (api/kube.py).
kubernetes_patterns = [
    path("api", endpoint("GET")(kube.core_versions)),
    path("api/v1", endpoint("GET")(kube.core_resources)),
    path("api/v1/events", endpoint("GET")(kube.core_events)),
    path("api/v1/namespaces/<str:namespace>/events", endpoint("GET")(kube.core_events)),
    path("version", endpoint("GET")(kube.version)),
    path("apis/authentication.k8s.io/v1", endpoint("GET")(kube.authentication_resources)),
    path("apis/authentication.k8s.io/v1/selfsubjectreviews", endpoint("POST")(kube.self_subject_review)),
    path("openapi/v3", endpoint("GET")(kube.openapi_root)),
    path("openapi/v3/apis/director.io/v1", endpoint("GET")(kube.openapi_group)),
]

urlpatterns = [
    *kubernetes_patterns,
    path("apis", views.discovery_root),
    path("apis/director.io/v1", views.discovery_group),
    path(SITES, streams.sites_collection),
    path(f"{SITES}/<str:name>", views.site_item),
    path(f"{SITES}/<str:name>/status", views.site_status),
    path(f"{SITES}/<str:name>/history", views.site_history),
    path(f"{SITES}/<str:name>/events", streams.site_events),
    path(f"{SITES}/<str:name>/logs", streams.site_logs),
    path(f"{SITES}/<str:name>/files", files.file_tree),
    path(f"{SITES}/<str:name>/files/<path:path>", files.file_item),
    path("apis/director.io/v1/events", streams.all_events),
    path("apis/director.io/v1/writes", audit.write_list),
    path("apis/director.io/v1/platforms", views.platform_list),
    path("apis/director.io/v1/platforms/<str:name>", views.platform_item),
    path("apis/director.io/v1/blockeddomains", views.blocked_domains),
    path("apis/director.io/v1/blockeddomains/<str:domain>", views.blocked_domain),
    path("apis/auth.director.io/v1/login", views.login),
    path("apis/auth.director.io/v1/tokens", views.tokens),
    path("apis/auth.director.io/v1/tokens/<int:token_id>", views.token_item),
    path("apis/auth.director.io/v1/users", user_views.user_collection),
    path("apis/auth.director.io/v1/users/<str:username>", user_views.user_item),
    path("shell-server/v1/authenticate", shell_server.authenticate_user),
    path("shell-server/v1/users/<str:username>/sites", shell_server.user_sites),
    path("shell-server/v1/publickey", shell_server.public_key_user),
    path("apis/auth.director.io/v1/sshkeys", sshkeys.ssh_keys),
    path("apis/auth.director.io/v1/sshkeys/<str:name>", sshkeys.ssh_key_item),
    path(GITSOURCES, streams.gitsources_collection),
    path(f"{GITSOURCES}/<str:name>", gitops_views.gitsource_item),
    path(f"{GITSOURCES}/<str:name>/events", gitops_views.gitsource_events),
    path("apis/director.io/v1/secrets", gitops_views.secret_collection),
    path("apis/director.io/v1/secrets/<str:name>", gitops_views.secret_item),
    path("controller/v1/gitsources/<str:name>/credentials", secrets.source_credentials),
    path("hooks/gitsources/<str:name>", hooks.gitsource_hook),
]
