"""Open WebUI: it answers, its admin signs in, and it lists the served model (which it gets from
LiteLLM with ``OPENAI_API_KEY``). The admin is the one env-templates/openwebui.env.j2 creates:
``admin@<project>.local`` with the ``openwebui_admin_password`` secret."""

from __future__ import annotations

from typing import Any

from ..registry import check
from .common import bearer, fail, restart_fix, unreachable_fix

OPENWEBUI_PORT = 8080


def admin_email(t: Any) -> str:
    return f"admin@{t.project}.local"


def sign_in(t: Any, p: Any) -> str:
    base = t.url("openwebui", OPENWEBUI_PORT)
    r = p.http("GET", base + "/health")
    if r.status != 200 or (r.json() or {}).get("status") is not True:
        fail("Open WebUI does not answer", expected='HTTP 200 {"status": true} on /health', got=r.describe(),
             fix=unreachable_fix(t, "openwebui"))
    r = p.http("POST", base + "/api/v1/auths/signin",
               json_body={"email": admin_email(t), "password": t.secrets["openwebui_admin_password"]})
    token = (r.json() or {}).get("token") if r.status == 200 else None
    if not token:
        fail("the admin cannot sign in", expected=f"a session token for {admin_email(t)}", got=r.describe(),
             fix="Open WebUI creates the admin only while it has no user; if its password was changed in "
                 "Open WebUI, sign in there and set it back to the stored one, or wipe the openwebui-data "
                 "volume to start over")
    return str(token)


@check("openwebui", "admin", "Open WebUI answers and its admin signs in")
def openwebui_admin(t: Any, p: Any) -> str:
    sign_in(t, p)
    return f"signed in as {admin_email(t)}"


@check("openwebui", "models", "Open WebUI lists the served model", needs=("litellm",))
def openwebui_models(t: Any, p: Any) -> str:
    from .llm import served_name

    name = served_name(t)
    token = sign_in(t, p)
    r = p.http("GET", t.url("openwebui", OPENWEBUI_PORT) + "/api/models", headers=bearer(token), timeout=60)
    if r.status != 200:
        fail("Open WebUI does not list its models", expected="HTTP 200", got=r.describe(),
             fix="see `inv logs --service openwebui`")
    ids = [m.get("id") for m in (r.json() or {}).get("data") or []]
    if name not in ids:
        fail(f"Open WebUI does not offer {name}", expected=f"{name} among its models", got=f"models: {ids or 'none'}",
             fix=f"Open WebUI asks LiteLLM with OPENAI_API_KEY at OPENAI_API_BASE_URL (env/{t.env}/openwebui.env); "
                 f"the key must be LiteLLM's master key: {restart_fix(t, 'openwebui')}")
    return name
