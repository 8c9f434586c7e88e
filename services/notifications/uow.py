"""The notifications unit of work: the kernel's outbox, inbox and audit plus this service's repositories."""

from __future__ import annotations

from sqlmodel import Session

from services.notifications.adapters.repositories import (
    DeliveryRepository,
    DisclosureRepository,
    NotificationRepository,
    SubscriptionRepository,
    WebhookRepository,
)
from shared.db.uow import UnitOfWork


class NotificationsUnitOfWork(UnitOfWork):
    notifications: NotificationRepository
    webhooks: WebhookRepository
    subscriptions: SubscriptionRepository
    deliveries: DeliveryRepository
    disclosures: DisclosureRepository

    def _open_repositories(self, session: Session) -> None:
        self.notifications = NotificationRepository(session)
        self.webhooks = WebhookRepository(session)
        self.subscriptions = SubscriptionRepository(session)
        self.deliveries = DeliveryRepository(session)
        self.disclosures = DisclosureRepository(session)
