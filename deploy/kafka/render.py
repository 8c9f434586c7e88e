#!/usr/bin/env python3
"""Turn topics.yaml and acls.yaml into kafka-topics.sh / kafka-configs.sh / kafka-acls.sh commands.

    python3 deploy/kafka/render.py --dry-run                      # print the commands
    python3 deploy/kafka/render.py --bootstrap-server kafka:9092 --command-config admin.properties
    python3 deploy/kafka/render.py --via admin-api --bootstrap-server kafka:9092 --command-config admin.properties

Every command is idempotent (create --if-not-exists, alter configs, add ACLs), so a re-run is safe.
Partition counts are never changed here: more partitions move keys and break per-key order.
`--via admin-api` does the same in one process through Kafka's admin API (kafka-python), without the
Kafka command-line tools; it reads the same admin.properties (security.protocol, sasl.mechanism and the
username/password of sasl.jaas.config). Needs PyYAML (`pip install pyyaml`), and kafka-python for admin-api.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def load(path: Path) -> dict:
    with path.open() as handle:
        return yaml.safe_load(handle)


def topic_config(topic: dict, defaults: dict) -> dict[str, str]:
    config = {key: str(value) for key, value in (defaults.get("config") or {}).items()}
    config.update({key: str(value) for key, value in (topic.get("config") or {}).items()})
    return config


def topic_commands(topics: dict, bin_dir: str, bootstrap: str, extra: list[str]) -> list[list[str]]:
    defaults = topics.get("defaults") or {}
    commands: list[list[str]] = []
    for topic in topics["topics"]:
        config = topic_config(topic, defaults)
        replication = topic.get("replication_factor", defaults.get("replication_factor"))
        create = [
            f"{bin_dir}kafka-topics.sh",
            "--bootstrap-server",
            bootstrap,
            *extra,
            "--create",
            "--if-not-exists",
            "--topic",
            topic["name"],
            "--partitions",
            str(topic["partitions"]),
            "--replication-factor",
            str(replication),
        ]
        for key, value in config.items():
            create += ["--config", f"{key}={value}"]
        commands.append(create)
        # --if-not-exists leaves an existing topic's configuration alone: bring it in line too.
        commands.append(
            [
                f"{bin_dir}kafka-configs.sh",
                "--bootstrap-server",
                bootstrap,
                *extra,
                "--alter",
                "--entity-type",
                "topics",
                "--entity-name",
                topic["name"],
                "--add-config",
                ",".join(f"{key}={value}" for key, value in config.items()),
            ]
        )
    return commands


def _grant(base: list[str], operation: str, resource: str, name: str, pattern: str) -> list[str]:
    # Describe is implied by Read and Write; naming it too is harmless and reads plainly.
    ops = ["--operation", operation, "--operation", "Describe"]
    return [*base, *ops, f"--{resource}", name, "--resource-pattern-type", pattern]


def acl_commands(acls: dict, bin_dir: str, bootstrap: str, extra: list[str]) -> list[list[str]]:
    commands: list[list[str]] = []
    for entry in acls["principals"]:
        base = [f"{bin_dir}kafka-acls.sh", "--bootstrap-server", bootstrap, *extra, "--add"]
        base += ["--allow-principal", entry["principal"]]
        commands += [_grant(base, "Write", "topic", topic, "literal") for topic in entry.get("write") or []]
        commands += [_grant(base, "Read", "topic", topic, "literal") for topic in entry.get("read") or []]
        commands += [_grant(base, "Read", "group", group, "prefixed") for group in entry.get("groups") or []]
    return commands


def render(
    bootstrap: str,
    command_config: str | None = None,
    kafka_bin: str = "",
    only: str | None = None,
    topics_path: Path = HERE / "topics.yaml",
    acls_path: Path = HERE / "acls.yaml",
) -> list[list[str]]:
    """Every command, topics first (ACLs name them), in file order."""
    bin_dir = kafka_bin.rstrip("/") + "/" if kafka_bin else ""
    extra = ["--command-config", command_config] if command_config else []
    commands: list[list[str]] = []
    if only in (None, "topics"):
        commands += topic_commands(load(topics_path), bin_dir, bootstrap, extra)
    if only in (None, "acls"):
        commands += acl_commands(load(acls_path), bin_dir, bootstrap, extra)
    return commands


def client_options(command_config: str | None) -> dict[str, str]:
    """kafka-python options from a Kafka client properties file (the subset Relais' clusters use)."""
    if not command_config:
        return {}
    props: dict[str, str] = {}
    for line in Path(command_config).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    options = {"security_protocol": props.get("security.protocol", "PLAINTEXT")}
    if "sasl.mechanism" in props:
        options["sasl_mechanism"] = props["sasl.mechanism"]
    jaas = props.get("sasl.jaas.config", "")
    for name, option in (("username", "sasl_plain_username"), ("password", "sasl_plain_password")):
        if match := re.search(rf'{name}="([^"]*)"', jaas):
            options[option] = match.group(1)
    if "ssl.truststore.location" in props or "ssl.ca.location" in props:
        options["ssl_cafile"] = props.get("ssl.ca.location", "")
    return options


def apply_with_admin_api(bootstrap: str, command_config: str | None, only: str | None,
                         topics_path: Path, acls_path: Path) -> int:
    """Create the topics and ACLs through the admin API; replication is capped at the cluster's size."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ConfigResource,
        ConfigResourceType,
        KafkaAdminClient,
        NewTopic,
        ResourcePattern,
        ResourceType,
    )

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=30_000,
                             **client_options(command_config))
    try:
        if only in (None, "topics"):
            topics = load(topics_path)
            defaults = topics.get("defaults") or {}
            brokers = len(admin.describe_cluster()["brokers"])
            existing = set(admin.list_topics())
            new, resources = [], []
            for topic in topics["topics"]:
                config = topic_config(topic, defaults)
                replication = int(topic.get("replication_factor", defaults.get("replication_factor", 1)))
                if replication > brokers:
                    print(f"{topic['name']}: replication {replication} capped at {brokers} broker(s)", flush=True)
                    replication = brokers
                    if "min.insync.replicas" in config:
                        config["min.insync.replicas"] = str(min(int(config["min.insync.replicas"]), replication))
                if topic["name"] in existing:
                    resources.append(ConfigResource(ConfigResourceType.TOPIC, topic["name"], config))
                else:
                    new.append(NewTopic(topic["name"], int(topic["partitions"]), replication, topic_configs=config))
                print(f"topic {topic['name']}: {topic['partitions']} partitions, replication {replication}, "
                      + ",".join(f"{k}={v}" for k, v in config.items()), flush=True)
            if new:
                admin.create_topics(new)
            if resources:
                admin.alter_configs(resources, incremental=True)
        if only in (None, "acls"):
            acls = []
            for entry in load(acls_path)["principals"]:
                grants = [(ACLOperation.WRITE, ResourceType.TOPIC, t, ACLResourcePatternType.LITERAL)
                          for t in entry.get("write") or []]
                grants += [(ACLOperation.READ, ResourceType.TOPIC, t, ACLResourcePatternType.LITERAL)
                           for t in entry.get("read") or []]
                grants += [(ACLOperation.READ, ResourceType.GROUP, g, ACLResourcePatternType.PREFIXED)
                           for g in entry.get("groups") or []]
                for operation, resource, name, pattern in grants:
                    for op in (operation, ACLOperation.DESCRIBE):
                        acls.append(ACL(entry["principal"], "*", op, ACLPermissionType.ALLOW,
                                        ResourcePattern(resource, name, pattern)))
                    print(f"allow {entry['principal']} {operation.name} {resource.name} {name} "
                          f"({pattern.name.lower()})", flush=True)
            result = admin.create_acls(acls)
            if result.get("failed"):
                print(f"failed ACLs: {result['failed']}", file=sys.stderr)
                return 1
    finally:
        admin.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--bootstrap-server",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        help="brokers (default: $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092)",
    )
    parser.add_argument("--command-config", help="admin client properties (security protocol, SASL/TLS)")
    parser.add_argument("--kafka-bin", default="", help="directory of the Kafka CLI scripts (default: on PATH)")
    parser.add_argument("--topics", type=Path, default=HERE / "topics.yaml")
    parser.add_argument("--acls", type=Path, default=HERE / "acls.yaml")
    parser.add_argument("--only", choices=("topics", "acls"), help="render only one half")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--via", choices=("cli", "admin-api"), default="cli",
                        help="run Kafka's command-line tools (default) or call the admin API directly")
    args = parser.parse_args(argv)

    if args.via == "admin-api" and not args.dry_run:
        return apply_with_admin_api(args.bootstrap_server, args.command_config, args.only, args.topics, args.acls)

    commands = render(args.bootstrap_server, args.command_config, args.kafka_bin, args.only, args.topics, args.acls)
    for command in commands:
        print(shlex.join(command), flush=True)
        if not args.dry_run:
            result = subprocess.run(command, check=False)
            if result.returncode != 0:
                print(f"failed ({result.returncode}): {shlex.join(command)}", file=sys.stderr)
                return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
