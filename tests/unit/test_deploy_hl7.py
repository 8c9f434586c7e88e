"""The HL7 v2 door in the deployments: the admissions service listens for MLLP (TLS in Kubernetes)."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.hl7v2.settings import MllpSettings

ROOT = Path(__file__).resolve().parents[2]


def _admissions_k8s() -> list[dict]:
    return list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "admissions.yaml").read_text()))


def test_the_admissions_deployment_listens_for_mllp_over_tls_from_a_secret():
    deployment = next(d for d in _admissions_k8s() if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    settings = MllpSettings(**{k.removeprefix("RELAIS_MLLP_").lower(): v for k, v in env.items()
                               if k.startswith("RELAIS_MLLP_")})
    assert settings.port == 2575 and settings.tls
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert str(settings.tls_cert).startswith(mounts["mllp-tls"])
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["mllp-tls"]["secret"]["secretName"] == "relais-mllp-tls"


def test_the_admissions_service_exposes_the_mllp_port():
    service = next(d for d in _admissions_k8s() if d["kind"] == "Service")
    assert {"name": "mllp", "port": 2575, "targetPort": "mllp", "protocol": "TCP"} in service["spec"]["ports"]


def test_compose_starts_the_mllp_listener_with_admissions():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    admissions = compose["services"]["admissions"]
    assert admissions["environment"]["RELAIS_MLLP_PORT"] == "2575"
    assert "2575:2575" in admissions["ports"]
