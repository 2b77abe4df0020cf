"""The dashboard's user-facing contract that both the HTML tests and the browser tests check:
every page by its <h1>, the navigation, and the buttons that change something."""

from __future__ import annotations

#: Every page of the dashboard by its <h1>; each has the navigation above.
PAGES = {
    "/hangfire": "Overview",
    "/hangfire/jobs": "Jobs",
    "/hangfire/retries": "Retries",
    "/hangfire/recurring": "Recurring",
    "/hangfire/queues": "Queues",
    "/hangfire/servers": "Servers",
    "/hangfire/batches": "Batches",
    "/hangfire/dead-letters": "Dead letters",
}
#: The navigation links, in order.
NAV_LINKS = (
    "Overview",
    "Jobs",
    "Retries",
    "Recurring",
    "Queues",
    "Servers",
    "Batches",
    "Dead letters",
)
#: Buttons that change something; a read-only session must see none of them.
ACTION_BUTTONS = (
    "Requeue",
    "Delete",
    "Enqueue now",
    "Requeue selected",
    "Delete selected",
    "Requeue all failed",
    "Trigger now",
    "Pause",
    "Resume",
    "Replay",
    "Discard",
)
