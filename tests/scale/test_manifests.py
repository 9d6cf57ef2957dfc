"""deploy/kubernetes/ against the Kubernetes schemas (kubernetes-validate, strict: unknown
fields are errors, as ``kubectl apply`` makes them), the RayService against KubeRay's own
CRD schema (tests/data/kuberay, unknown fields refused too), its Serve config against
Serve's schema and this project's services and settings."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from secretary.config import Settings, environment_variables
from secretary.scale.settings import SERVICE_NAMES
from tests.helpers import DATA

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.37.0"


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return found


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused wherever it lists the known ones (the
    API server's strict field validation)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {k: strict(v) for k, v in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        schema["additionalProperties"] = False
    return schema


@pytest.fixture(scope="module")
def rayservice_schema() -> dict[str, Any]:
    path = DATA / "kuberay" / "rayservice-v1.schema.json"
    return strict(json.loads(path.read_text(encoding="utf-8")))


def rayservice() -> dict[str, Any]:
    [service] = of_kind("RayService")
    return service


def pod_templates(service: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = service["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"],
            *(group["template"] for group in cluster["workerGroupSpecs"])]


def test_core_kinds_validate_strictly() -> None:
    core = [d for d in documents() if d["apiVersion"] != "ray.io/v1"]
    assert {d["kind"] for d in core} == {"PersistentVolumeClaim", "Secret"}
    for document in core:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_the_pod_templates_validate_as_core_pods() -> None:
    for template in pod_templates(rayservice()):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate",
                                      "metadata": {"name": "secretary"},
                                      "template": template}, KUBERNETES, strict=True)


def test_the_rayservice_validates_against_kuberays_crd_schema(
        rayservice_schema: dict[str, Any]) -> None:
    jsonschema.validate(rayservice(), rayservice_schema)


def test_the_crd_check_catches_a_misspelt_field(rayservice_schema: dict[str, Any]) -> None:
    wrong = copy.deepcopy(rayservice())
    cluster = wrong["spec"]["rayClusterConfig"]
    cluster["workerGroupSpec"] = cluster.pop("workerGroupSpecs")
    with pytest.raises(jsonschema.ValidationError, match="workerGroupSpec"):
        jsonschema.validate(wrong, rayservice_schema)
    wrong = copy.deepcopy(rayservice())
    wrong["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, rayservice_schema)


def serve_config() -> dict[str, Any]:
    return yaml.safe_load(rayservice()["spec"]["serveConfigV2"])


def test_the_serve_config_is_serves_schema_and_builds_every_service(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve.schema import ServeDeploySchema

    from secretary.scale.app import build

    config = serve_config()
    ServeDeploySchema.model_validate(config)
    applications = config["applications"]
    assert sorted(a["name"] for a in applications) == sorted(
        s for s in SERVICE_NAMES if s != "canary")
    # The pods' settings, as a replica reads them (the key from its Secret).
    for item in pod_templates(rayservice())[0]["spec"]["containers"][0]["env"]:
        monkeypatch.setenv(item["name"], item.get("value", "a-key-from-the-secret"))
    settings = Settings(_env_file=None)
    for application in applications:
        args = application["args"]
        assert application["import_path"] == "secretary.scale.app:build"
        assert application["name"] == args["service"]
        assert application["route_prefix"] == settings.ray.route_prefix(args["service"])
        assert sorted(args["deployed"]) == sorted(a["name"] for a in applications)
        bound = build(args)
        options = bound._bound_deployment._deployment_config
        actor = bound._bound_deployment.ray_actor_options
        assert actor["num_cpus"] == settings.ray.resources(args["service"])[0]
        assert options.autoscaling_config.max_replicas == settings.ray.replicas(
            args["service"])[1]
    assert settings.ray.resources("stt") == (1.0, 0.25)  # a quarter of a GPU


def test_every_setting_named_exists_and_the_key_comes_from_the_secret() -> None:
    known = set(environment_variables())
    [secret] = of_kind("Secret")
    claims = {c["metadata"]["name"] for c in of_kind("PersistentVolumeClaim")}
    for template in pod_templates(rayservice()):
        [container] = template["spec"]["containers"]
        env = {item["name"]: item for item in container["env"]}
        for name in env:
            assert not name.startswith("SECRETARY_") or name in known, name
        reference = env["SECRETARY_API_KEY"]["valueFrom"]["secretKeyRef"]
        assert reference["name"] == secret["metadata"]["name"]
        assert reference["key"] in secret["stringData"]
        assert env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"]["value"] == (
            "secretary.scale.proxy:middlewares")
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert {v["persistentVolumeClaim"]["claimName"] for v in volumes.values()} == claims
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {env["SECRETARY_CACHE_DIR"]["value"], env["SECRETARY_DATA_DIR"]["value"]} <= mounts
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) in {
            p["containerPort"] for p in container["ports"]}


def test_workers_are_ready_when_their_proxy_answers_health() -> None:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        [container] = group["template"]["spec"]["containers"]
        probe = container["readinessProbe"]["httpGet"]
        assert probe["path"] == "/health" and probe["port"] == 8000
        assert container["livenessProbe"]
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == "1"
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
