"""The console's pages, one module per resource (like `api.routes`)."""

from __future__ import annotations

from api.console.routes import campaigns, contacts, dev_mail, journeys, messages, recurring, session

ROUTERS = (
    session.router,
    journeys.router,
    campaigns.router,
    recurring.router,
    contacts.router,
    messages.router,
    dev_mail.router,
)
