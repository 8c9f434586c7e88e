"""deploy/kafka (topics, ACLs, apply script) and deploy/k8s (manifests) match the code and docs/events.md."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared import events
from shared.hl7v2.settings import MllpSettings
from shared.settings import SETTINGS_BY_SERVICE, RelaisSettings

ROOT = Path(__file__).resolve().parents[2]
KAFKA = ROOT / "deploy" / "kafka"
K8S = ROOT / "deploy" / "k8s"
SERVICES = ("admissions", "discharge", "snp", "notifications")
ROLE_TOPICS = {"team": events.TOPIC_NOTIFY_TEAM, "cpts": events.TOPIC_NOTIFY_CPTS, "dac": events.TOPIC_NOTIFY_DAC}
CODE_TOPICS = {value for name, value in vars(events).items() if name.startswith("TOPIC_")}
PLACEHOLDER = "REPLACE_ME"


# --- loading ---------------------------------------------------------------------------------------


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict]:
    """Every object of every deploy/k8s YAML file, by (kind, name)."""
    found: dict[tuple[str, str], dict] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _docs(path):
            key = (doc["kind"], doc.get("metadata", {}).get("name", path.stem))
            assert key not in found, f"{key} defined twice"
            found[key] = doc | {"__file__": path.name}
    return found


@pytest.fixture(scope="module")
def topics() -> dict[str, dict]:
    data = yaml.safe_load((KAFKA / "topics.yaml").read_text())
    return {topic["name"]: topic for topic in data["topics"]}


@pytest.fixture(scope="module")
def acls() -> dict:
    return yaml.safe_load((KAFKA / "acls.yaml").read_text())


def _principal(acls: dict, name: str) -> dict:
    matches = [entry for entry in acls["principals"] if entry["principal"] == name]
    assert len(matches) == 1, f"{name} must appear exactly once in acls.yaml"
    return matches[0]


def _events_table() -> dict[str, tuple[set[str], set[str]]]:
    """docs/events.md topic table: topic -> (producing services, consuming services)."""
    table: dict[str, tuple[set[str], set[str]]] = {}
    for line in (ROOT / "docs" / "events.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not re.fullmatch(r"`relais\.[a-z.]+`", cells[0]):
            continue

        def services(cell: str) -> set[str]:
            return {word for word in re.findall(r"[a-z]+", cell) if word in SERVICES}

        table[cells[0].strip("`")] = (services(cells[2]), services(cells[3]))
    return table


EVENTS_TABLE = _events_table()


def _env(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def _deployment(manifests: dict, service: str) -> dict:
    return manifests[("Deployment", f"relais-{service}")]


def _container(workload: dict) -> dict:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# --- topics -------------------------------------------------------------------------------------------


def test_the_events_doc_table_was_read():
    assert set(EVENTS_TABLE) == CODE_TOPICS


def test_every_topic_of_the_code_and_its_dead_letter_topic_is_defined(topics):
    expected = CODE_TOPICS | {f"{topic}.dlq" for topic in CODE_TOPICS}
    assert set(topics) == expected


@pytest.mark.parametrize("name", sorted(CODE_TOPICS | {f"{t}.dlq" for t in CODE_TOPICS}))
def test_each_topic_is_replicated_three_times_with_two_in_sync_and_has_a_retention_policy(topics, name):
    topic = topics[name]
    assert topic["replication_factor"] == 3
    assert int(topic["partitions"]) >= 1
    config = topic["config"]
    assert config["min.insync.replicas"] == "2"
    assert config["cleanup.policy"] in {"delete", "compact", "compact,delete"}
    if "delete" in config["cleanup.policy"]:
        assert int(config["retention.ms"]) > 0


def test_dead_letters_outlive_the_notify_topics_they_catch(topics):
    for topic in ROLE_TOPICS.values():
        assert int(topics[f"{topic}.dlq"]["config"]["retention.ms"]) > int(topics[topic]["config"]["retention.ms"])


def test_keyed_topics_have_enough_partitions_to_scale_consumers(topics):
    for name in (*ROLE_TOPICS.values(), events.TOPIC_CARETEAM):
        assert topics[name]["partitions"] >= 3


# --- ACLs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(ROLE_TOPICS))
def test_a_role_principal_reads_exactly_its_own_notify_topic_and_writes_nothing(acls, role):
    entry = _principal(acls, f"User:relais-role-{role}")
    assert entry["read"] == [ROLE_TOPICS[role]]
    assert not entry.get("write")
    # its consumer groups cannot collide with the services' groups
    prefix = acls["group_prefix"]
    for group in entry["groups"]:
        assert not any(
            f"{prefix}.{service}".startswith(group) or group.startswith(f"{prefix}.{service}") for service in SERVICES
        )


def test_no_other_principal_reads_a_notify_topic_except_the_notifications_service(acls):
    readers = {
        entry["principal"]
        for entry in acls["principals"]
        for topic in entry.get("read") or []
        if topic in ROLE_TOPICS.values()
    }
    assert readers == {"User:relais-notifications", *(f"User:relais-role-{role}" for role in ROLE_TOPICS)}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_writes_what_it_produces_and_reads_what_it_consumes_per_the_events_doc(acls, service):
    entry = _principal(acls, f"User:relais-{service}")
    produced = {topic for topic, (producers, _) in EVENTS_TABLE.items() if service in producers}
    consumed = {topic for topic, (_, consumers) in EVENTS_TABLE.items() if service in consumers}
    assert produced, f"docs/events.md names no topic produced by {service}"
    assert set(entry["write"]) == produced | {f"{topic}.dlq" for topic in consumed}
    assert set(entry["read"]) == consumed
    # its consumer groups: `<RELAIS_CONSUMER_GROUP_PREFIX>.<service>` (shared/runtime.py)
    assert entry["groups"] == ([f"{acls['group_prefix']}.{service}"] if consumed else [])


def test_the_acl_group_prefix_is_the_one_the_services_use(acls, manifests):
    assert acls["group_prefix"] == RelaisSettings.model_fields["consumer_group_prefix"].default
    assert manifests[("ConfigMap", "relais-config")]["data"]["RELAIS_CONSUMER_GROUP_PREFIX"] == acls["group_prefix"]


def test_every_acl_names_a_defined_topic(acls, topics):
    for entry in acls["principals"]:
        for topic in [*(entry.get("read") or []), *(entry.get("write") or [])]:
            assert topic in topics, f"{entry['principal']}: unknown topic {topic}"


# --- apply.sh / render.py ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dry_run() -> list[str]:
    result = subprocess.run(
        [
            sys.executable,
            str(KAFKA / "render.py"),
            "--dry-run",
            "--bootstrap-server",
            "kafka-0:9092",
            "--command-config",
            "/etc/kafka/admin.properties",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.splitlines()


def test_apply_sh_hands_over_to_render_py():
    script = (KAFKA / "apply.sh").read_text()
    assert script.startswith("#!/bin/sh") and "render.py" in script and '"$@"' in script
    assert (KAFKA / "apply.sh").stat().st_mode & 0o111


def test_dry_run_creates_every_topic_idempotently_with_its_settings(dry_run, topics):
    for name, topic in topics.items():
        create = [line for line in dry_run if line.startswith("kafka-topics.sh") and f"--topic {name} " in line]
        assert len(create) == 1, name
        line = create[0]
        assert "--create --if-not-exists" in line
        assert "--bootstrap-server kafka-0:9092 --command-config /etc/kafka/admin.properties" in line
        assert f"--partitions {topic['partitions']} --replication-factor 3" in line
        assert "--config min.insync.replicas=2" in line
        assert f"--config cleanup.policy={topic['config']['cleanup.policy']}" in line
        assert any(other.startswith("kafka-configs.sh") and f"--entity-name {name} " in other for other in dry_run), (
            f"{name}: existing topic configs are not reconciled"
        )


def test_dry_run_adds_the_role_and_service_acls(dry_run):
    acl_lines = [line for line in dry_run if line.startswith("kafka-acls.sh")]
    assert all(" --add " in line for line in acl_lines)
    assert (
        "--allow-principal User:relais-role-cpts --operation Read --operation Describe "
        "--topic relais.notify.cpts --resource-pattern-type literal"
    ) in "\n".join(acl_lines)
    cpts = [line for line in acl_lines if "User:relais-role-cpts " in line]
    assert {re.search(r"--(?:topic|group) (\S+)", line).group(1) for line in cpts} == {
        "relais.notify.cpts",
        "relais-ext.cpts",
    }
    assert any(
        "User:relais-discharge --operation Write" in line and "--topic relais.notify.dac " in line for line in acl_lines
    )
    assert any(
        "User:relais-snp --operation Read" in line and "--group relais.snp --resource-pattern-type prefixed" in line
        for line in acl_lines
    )
    # topics exist before ACLs are added for them
    first_acl = next(index for index, line in enumerate(dry_run) if line.startswith("kafka-acls.sh"))
    assert all(not line.startswith("kafka-topics.sh") for line in dry_run[first_acl:])


# --- Kubernetes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_deployment_service_and_disruption_budget(manifests, service):
    deployment = _deployment(manifests, service)
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    svc = manifests[("Service", f"relais-{service}")]
    assert svc["spec"]["selector"] == selector
    assert svc["spec"]["ports"][0]["targetPort"] in ("http", 8000)
    pdb = manifests[("PodDisruptionBudget", f"relais-{service}")]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert deployment["spec"]["replicas"] > pdb["spec"]["minAvailable"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_serves_its_service_with_probes_on_its_own_prefix(manifests, service):
    container = _container(_deployment(manifests, service))
    assert container["image"].split(":")[0] == "relais"
    assert container["command"] == ["relais", "serve", service, "--host", "0.0.0.0", "--port", "8000"]
    mllp = {"mllp": 2575} if service == "admissions" else {}  # admissions hosts the HL7 v2 door (docs/hl7v2.md)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000, "liveness": 8081, **mllp}
    # Liveness from the probe process (RELAIS_LIVENESS_PORT), which a busy service cannot delay.
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert _env(container)["RELAIS_LIVENESS_PORT"]["value"] == "8081"
    assert container["readinessProbe"]["httpGet"]["path"] == f"/{service}/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == f"/{service}/healthz"
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()


@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_gets_only_its_own_database_and_the_kafka_bootstrap(manifests, service):
    env = _env(_container(_deployment(manifests, service)))
    upper = service.upper()
    assert env["RELAIS_ENVIRONMENT"]["value"] == "production"
    assert env[f"RELAIS_{upper}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == f"RELAIS_{upper}_DATABASE_URL"
    assert env[f"RELAIS_{upper}_DATABASE_SCHEMA"]["valueFrom"]["configMapKeyRef"]["name"] == "relais-config"
    assert env["RELAIS_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "relais-secrets"
    assert env["KAFKA_BOOTSTRAP_SERVERS"]["valueFrom"]["configMapKeyRef"]["key"] == "KAFKA_BOOTSTRAP_SERVERS"
    assert {"RELAIS_AUTH_DATABASE_URL", "RELAIS_AUTH_DATABASE_SCHEMA"} <= env.keys()
    others = {f"RELAIS_{other.upper()}_DATABASE_URL" for other in SERVICES if other != service}
    assert not others & env.keys(), "a service must not hold another service's database credentials"


def test_every_env_name_is_read_by_the_settings(manifests):
    settings_fields = {
        name
        for cls in (RelaisSettings, *SETTINGS_BY_SERVICE.values())
        for name, field in cls.model_fields.items()
        for name in [name, *(getattr(field.validation_alias, "choices", None) or [])]
    }
    known = {f"RELAIS_{name.upper()}" for name in settings_fields if isinstance(name, str)}
    known |= {name for name in settings_fields if isinstance(name, str) and name.isupper()}
    known |= {"RELAIS_LOG_LEVEL", "RELAIS_SERVICE"}  # relais/cli.py; the image's healthcheck
    known |= {f"RELAIS_MLLP_{name.upper()}" for name in MllpSettings.model_fields}  # the HL7 v2 listener
    for (kind, name), obj in manifests.items():
        if kind == "ConfigMap":
            names = set(obj["data"])
        elif kind == "Secret":
            names = set(obj["stringData"])
        elif kind in ("Deployment", "Job"):
            names = set(_env(_container(obj)))
        else:
            continue
        assert names <= known, f"{kind}/{name}: unknown settings {sorted(names - known)}"


def test_configmap_and_secret_keys_referenced_by_workloads_exist(manifests):
    config = manifests[("ConfigMap", "relais-config")]["data"]
    secret = manifests[("Secret", "relais-secrets")]["stringData"]
    for (kind, name), obj in manifests.items():
        if kind not in ("Deployment", "Job"):
            continue
        for item in _container(obj).get("env", []):
            ref = item.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                assert ref["configMapKeyRef"]["key"] in config, f"{name}: {item['name']}"
            if "secretKeyRef" in ref:
                assert ref["secretKeyRef"]["name"] == "relais-secrets"
                assert ref["secretKeyRef"]["key"] in secret, f"{name}: {item['name']}"


def test_no_literal_secret_in_any_manifest(manifests):
    sensitive = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL")
    for (kind, name), obj in manifests.items():
        if kind == "Secret":
            assert "data" not in obj, "the Secret template must not carry base64 values"
            for key, value in obj["stringData"].items():
                assert PLACEHOLDER in value, f"{key} must be a placeholder"
                if key == "RELAIS_SECRET_KEY":
                    assert len(value) < 32, "the placeholder must be one production refuses"
        elif kind == "ConfigMap":
            for key, value in obj["data"].items():
                assert not sensitive.search(key), f"{key} belongs in the Secret"
                assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), f"{key} embeds credentials"
        elif kind in ("Deployment", "Job"):
            for item in _container(obj).get("env", []):
                if sensitive.search(item["name"]):
                    assert "value" not in item and "secretKeyRef" in item["valueFrom"], f"{name}: {item['name']}"


def test_secret_template_is_not_applied_by_kustomize(manifests):
    resources = manifests[("Kustomization", "kustomization")]["resources"]
    assert "secret.template.yaml" not in resources
    assert manifests[("Secret", "relais-secrets")]["__file__"] == "secret.template.yaml"


def test_kustomization_lists_every_manifest_but_the_template(manifests):
    resources = manifests[("Kustomization", "kustomization")]["resources"]
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.template.yaml"}
    assert set(resources) == files
    assert manifests[("Kustomization", "kustomization")]["namespace"] == "relais"


def test_pods_run_as_the_images_non_root_user_on_a_read_only_root(manifests):
    uid = int(re.search(r"--uid (\d+)", (ROOT / "deploy" / "Dockerfile").read_text()).group(1))
    workloads = [obj for (kind, _), obj in manifests.items() if kind in ("Deployment", "Job")]
    assert len(workloads) == len(SERVICES) + 1
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["automountServiceAccountToken"] is False
        container = _container(workload)
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
        assert "/tmp" in mounts


def test_the_migration_job_runs_db_upgrade_for_every_service(manifests):
    job = manifests[("Job", "relais-db-upgrade")]
    container = _container(job)
    assert container["command"] == ["relais", "db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    env = _env(container)
    assert env["RELAIS_ENVIRONMENT"]["value"] == "production"
    for service in SERVICES:
        assert f"RELAIS_{service.upper()}_DATABASE_URL" in env
        assert f"RELAIS_{service.upper()}_DATABASE_SCHEMA" in env


def test_schemas_match_the_postgres_init_script(manifests):
    script = (ROOT / "deploy" / "postgres-init.sql").read_text().lower()
    config = manifests[("ConfigMap", "relais-config")]["data"]
    for key, value in config.items():
        if key.endswith("_DATABASE_SCHEMA"):
            assert f"create schema if not exists {value};" in script


def _kustomize(directory: Path) -> list[dict]:
    """`kubectl kustomize` when kubectl is here; else the same resources with the namespace applied."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    built = []
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((directory / resource).read_text()):
            if doc and doc["kind"] != "Namespace" and kustomization.get("namespace"):
                doc.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
            if doc:
                built.append(doc)
    return built


def test_kustomize_builds_every_manifest_but_the_secret_template():
    built = _kustomize(K8S)
    assert {doc["kind"] for doc in built} >= {
        "Namespace",
        "ConfigMap",
        "Job",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    }
    assert not any(doc["kind"] == "Secret" for doc in built)
    assert all(doc["metadata"].get("namespace") == "relais" for doc in built if doc["kind"] != "Namespace")
