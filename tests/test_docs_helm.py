"""The Zero to JupyterHub snippets in docs/zero-to-jupyterhub.md: every ```yaml block parses,
Helm values use only keys the z2jh 4.x chart has (a typo is silently ignored by Helm, so it
is caught here), the Python in ``hub.extraConfig`` compiles and configures what it claims,
and the bodhi settings in the snippets name real configurables and traits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

DOC = Path(__file__).resolve().parent.parent / "docs" / "zero-to-jupyterhub.md"

#: keys of the z2jh 4.x chart's values schema (jupyterhub/values.schema.yaml) that the
#: snippets may use, per section; the schema forbids any others in these sections
Z2JH = {
    "": {"hub", "proxy", "singleuser", "scheduling", "ingress", "prePuller", "custom",
         "cull", "debug", "rbac", "global", "imagePullSecret", "imagePullSecrets",
         "fullnameOverride", "nameOverride"},
    "hub": {"config", "services", "loadRoles", "extraConfig", "extraEnv", "extraFiles",
            "image", "db", "nodeSelector", "tolerations", "resources", "networkPolicy",
            "allowNamedServers", "baseUrl", "cookieSecret", "existingSecret", "templatePaths",
            "templateVars", "extraVolumes", "extraVolumeMounts", "extraContainers",
            "concurrentSpawnLimit", "activeServerLimit", "namedServerLimitPerUser"},
    "singleuser": {"image", "profileList", "extraEnv", "extraFiles", "extraResource",
                   "extraTolerations", "nodeSelector", "extraNodeAffinity", "memory", "cpu",
                   "storage", "defaultUrl", "cmd", "startTimeout", "networkPolicy",
                   "extraLabels", "extraAnnotations", "extraContainers", "initContainers",
                   "lifecycleHooks", "serviceAccountName", "uid", "fsGid", "extraPodConfig"},
    "singleuser.extraResource": {"limits", "guarantees"},
    "singleuser.memory": {"limit", "guarantee"},
    "singleuser.cpu": {"limit", "guarantee"},
    "singleuser.image": {"name", "tag", "pullPolicy", "pullSecrets"},
    "cull": {"enabled", "users", "adminUsers", "removeNamedServers", "timeout", "every",
             "concurrency", "maxAge"},
}
#: KubeSpawner traits a profile may override (profileList[].kubespawner_override)
KUBESPAWNER_OVERRIDES = {"image", "extra_resource_limits", "extra_resource_guarantees",
                         "node_selector", "tolerations", "mem_limit", "mem_guarantee",
                         "cpu_limit", "cpu_guarantee", "environment", "default_url"}
#: bodhi traits the docs name that come with a branch not merged yet: allowed only while
#: the trait is missing, so this entry is dead (and can go) once that branch is in


def snippets() -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def documents() -> list[dict]:
    docs = [d for text in snippets() for d in yaml.safe_load_all(text)]
    assert all(isinstance(d, dict) for d in docs), docs
    return docs


def helm_values() -> list[dict]:
    return [d for d in documents() if "kind" not in d]


def manifests() -> list[dict]:
    return [d for d in documents() if "kind" in d]


def test_every_snippet_parses_and_there_are_both_kinds():
    assert len(snippets()) >= 6
    for text in snippets():
        list(yaml.safe_load_all(text))  # raises on invalid YAML
    assert len(helm_values()) >= 5
    assert {m["kind"] for m in manifests()} == {"Deployment", "Service"}


def check_keys(values: dict, where: str = "") -> list[str]:
    """Keys of ``values`` that the chart does not have, in the sections listed in Z2JH."""
    bad = [f"{where}.{k}".lstrip(".") for k in values if where in Z2JH and k not in Z2JH[where]]
    for key, value in values.items():
        path = f"{where}.{key}".lstrip(".")
        if isinstance(value, dict) and path in Z2JH:
            bad += check_keys(value, path)
    return bad


def test_helm_values_use_only_keys_the_chart_has():
    bad = [k for values in helm_values() for k in check_keys(values)]
    assert not bad, bad
    for values in helm_values():
        for profile in values.get("singleuser", {}).get("profileList", []):
            assert {"display_name"} <= set(profile), profile
            unknown = set(profile.get("kubespawner_override", {})) - KUBESPAWNER_OVERRIDES
            assert not unknown, unknown


def merged() -> dict:
    """All Helm snippets merged, as `helm --values` merges maps (lists: the last wins)."""
    def merge(into: dict, new: dict) -> dict:
        for k, v in new.items():
            into[k] = merge(into.get(k, {}), v) if isinstance(v, dict) else v
        return into

    out: dict = {}
    for values in helm_values():
        merge(out, values)
    return out


def test_per_user_mode_puts_engines_on_a_gpu_node():
    single = merged()["singleuser"]
    gpu = [p for p in single["profileList"] if "kubespawner_override" in p]
    assert gpu, single["profileList"]
    override = gpu[0]["kubespawner_override"]
    assert override["extra_resource_limits"]["nvidia.com/gpu"] == "1"  # a string, as k8s wants
    assert override["node_selector"] and override["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert single["extraResource"]["limits"]["nvidia.com/gpu"] == "1"
    assert single["extraTolerations"][0]["effect"] == "NoSchedule"
    assert merged()["cull"]["enabled"] is True


def test_shared_service_registration_roles_and_extra_config():
    hub = merged()["hub"]
    assert set(hub["services"]) == {"bodhi"}
    assert hub["services"]["bodhi"]["url"].startswith("http://")
    roles = hub["loadRoles"]
    assert "access:services!service=bodhi" in roles["user"]["scopes"]
    assert "custom:bodhi:admin" in roles["bodhi-admins"]["scopes"]
    assert hub["extraConfig"], hub
    c = Config()
    for name, source in hub["extraConfig"].items():
        exec(compile(source, f"hub.extraConfig.{name}", "exec"), {"c": c})  # noqa: S102
    assert "custom:bodhi:admin" in c.JupyterHub.custom_scopes
    assert c.JupyterHub.custom_scopes["custom:bodhi:admin"]["description"]
    assert "access:services!service=bodhi" in c.Spawner.server_token_scopes


def test_the_service_pod_gets_the_gpu_and_the_hubs_token_for_it():
    deployment = next(m for m in manifests() if m["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    env = {e["name"]: e for e in container["env"]}
    service_key = next(iter(merged()["hub"]["services"]))
    assert env["JUPYTERHUB_SERVICE_NAME"]["value"] == service_key
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hub", "key": f"hub.services.{service_key}.apiToken"}
    port = container["ports"][0]["containerPort"]
    service = next(m for m in manifests() if m["kind"] == "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == port
    assert f":{port}" in merged()["hub"]["services"][service_key]["url"]


def bodhi_settings() -> list[tuple[str, str]]:
    """(class, trait) of every bodhi setting in the snippets: extraFiles data and
    --Class.trait=value arguments."""
    found = []
    for values in helm_values():
        for f in values.get("singleuser", {}).get("extraFiles", {}).values():
            found += [(cls, t) for cls, traits in f["data"].items() for t in traits]
    for m in manifests():
        for container in m.get("spec", {}).get("template", {}).get("spec", {}).get(
                "containers", []):
            found += [tuple(a[2:].split("=", 1)[0].split(".", 1))
                      for a in container.get("args", []) if a.startswith("--")]
    return found


def test_bodhi_settings_name_real_traits():
    from bodhi_jupyter.app import BodhiApp
    from bodhi_jupyter.engine.launcher import LlamaServerLauncher
    from bodhi_jupyter.engine.supervisor import EngineSupervisor
    from bodhi_jupyter.models.registry import ModelRegistry
    from bodhi_jupyter.store.database import Database

    classes = {cls.__name__: cls for cls in (BodhiApp, LlamaServerLauncher, EngineSupervisor,
                                             ModelRegistry, Database)}
    settings = bodhi_settings()
    assert ("ModelRegistry", "default_gpu_layers") in settings, settings
    missing = [(cls, trait) for cls, trait in settings
               if cls not in classes
               or trait not in classes[cls].class_trait_names(config=True)]
    assert not missing, missing


@pytest.mark.parametrize("text", snippets(), ids=lambda t: t.split("\n", 1)[0][:30])
def test_no_snippet_holds_a_secret(text):
    assert not re.search(r"(?i)(api_?token|password|secret)\s*:\s*['\"]?[A-Za-z0-9]{16,}",
                         text), text
