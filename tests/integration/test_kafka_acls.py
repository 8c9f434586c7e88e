"""The per-role ACLs of deploy/kafka/acls.yaml, enforced by a real Apache Kafka 4 broker.

A Kafka 4 node with SASL/SCRAM and the standard authorizer (nothing allowed without an ACL) gets the
repository's topics and ACLs through `deploy/kafka/apply.sh`. Then each principal, authenticated as
itself, can write exactly the topics it lists, read exactly the topics it lists, use only its own
consumer groups, and is refused by the broker everywhere else.
"""

from __future__ import annotations

import uuid

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError

from tests.infra.brokers import REPO_ROOT
from tests.infra.kafka4 import Kafka4Cluster

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

DEPLOY = REPO_ROOT / "deploy" / "kafka"
ACLS = yaml.safe_load((DEPLOY / "acls.yaml").read_text())["principals"]
TOPICS = [topic["name"] for topic in yaml.safe_load((DEPLOY / "topics.yaml").read_text())["topics"]]
PRINCIPALS = {entry["principal"].removeprefix("User:"): entry for entry in ACLS}
ROLE_TOPICS = {"team": "relais.notify.team", "cpts": "relais.notify.cpts", "dac": "relais.notify.dac"}


@pytest.fixture(scope="module")
def secured(kafka_secured):
    """The SASL broker with the repository's topics and ACLs applied by apply.sh (see conftest)."""
    return kafka_secured


def produce(cluster: Kafka4Cluster, user: str, topic: str) -> None:
    producer = KafkaProducer(**cluster.client_config(user), acks="all", enable_idempotence=False, retries=0,
                             max_block_ms=10_000, request_timeout_ms=10_000)
    try:
        producer.send(topic, key=b"k", value=b"acl-test", partition=0).get(timeout=10)
    finally:
        producer.close(timeout=2)


def read_first(cluster: Kafka4Cluster, user: str, topic: str, group: str | None = None) -> bytes:
    consumer = KafkaConsumer(**cluster.client_config(user), group_id=group, enable_auto_commit=False,
                             request_timeout_ms=10_000, max_poll_records=1)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        for _ in range(50):  # bounded: each poll waits at most 200 ms
            records = consumer.poll(timeout_ms=200).get(partition)
            if records:
                if group is not None:
                    consumer.commit()
                return records[0].value
            # The broker answered TOPIC_AUTHORIZATION_FAILED to the metadata request (an assigning
            # consumer only logs it): surface it as the error it is.
            if topic in consumer._client.cluster.unauthorized_topics:
                raise TopicAuthorizationFailedError(topic)
        raise AssertionError(f"{user} read nothing from {topic}")
    finally:
        consumer.close(autocommit=False)


@pytest.mark.parametrize("user", sorted(PRINCIPALS))
def test_a_principal_writes_exactly_the_topics_its_acls_list(secured, user):
    allowed = set(PRINCIPALS[user].get("write") or [])
    outcomes = {}
    for topic in TOPICS:
        try:
            produce(secured, user, topic)
            outcomes[topic] = "written"
        except TopicAuthorizationFailedError:
            outcomes[topic] = "refused"
    assert {t for t, o in outcomes.items() if o == "written"} == allowed
    assert {t for t, o in outcomes.items() if o == "refused"} == set(TOPICS) - allowed


@pytest.mark.parametrize("user", sorted(PRINCIPALS))
def test_a_principal_reads_exactly_the_topics_its_acls_list(secured, user):
    allowed = set(PRINCIPALS[user].get("read") or [])
    outcomes = {}
    for topic in TOPICS:
        try:
            read_first(secured, user, topic)
            outcomes[topic] = "read"
        except TopicAuthorizationFailedError:
            outcomes[topic] = "refused"
    assert {t for t, o in outcomes.items() if o == "read"} == allowed
    assert {t for t, o in outcomes.items() if o == "refused"} == set(TOPICS) - allowed


@pytest.mark.parametrize("user", sorted(u for u, e in PRINCIPALS.items() if e.get("groups")))
def test_a_principal_commits_offsets_only_in_its_own_consumer_groups(secured, user):
    entry = PRINCIPALS[user]
    topic = entry["read"][0]
    own = f"{entry['groups'][0]}-acl-{uuid.uuid4().hex[:6]}"
    assert read_first(secured, user, topic, group=own) == b"seed"
    others = [e["groups"][0] for e in ACLS if e.get("groups") and not e["groups"][0].startswith(entry["groups"][0])]
    for group in others:
        with pytest.raises(GroupAuthorizationFailedError):
            read_first(secured, user, topic, group=f"{group}-acl-{uuid.uuid4().hex[:6]}")


@pytest.mark.parametrize("role", sorted(ROLE_TOPICS))
def test_a_role_cannot_read_another_roles_topic(secured, role):
    user = f"relais-role-{role}"
    assert read_first(secured, user, ROLE_TOPICS[role], group=f"relais-ext.{role}-{uuid.uuid4().hex[:6]}") == b"seed"
    for other, topic in ROLE_TOPICS.items():
        if other != role:
            with pytest.raises(TopicAuthorizationFailedError):
                read_first(secured, user, topic)


def test_a_user_without_acls_is_refused_everything_and_a_wrong_password_is_refused_at_login(secured):
    with pytest.raises(TopicAuthorizationFailedError):
        read_first(secured, "relais-intruder", "relais.notify.team")
    with pytest.raises(TopicAuthorizationFailedError):
        produce(secured, "relais-intruder", "relais.admissions")
    config = {**secured.client_config("relais-admissions"), "sasl_plain_password": "not-the-password"}
    with pytest.raises(KafkaError):
        KafkaProducer(**config, max_block_ms=5_000, bootstrap_timeout_ms=5_000)
