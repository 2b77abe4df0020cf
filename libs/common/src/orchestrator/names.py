"""Names the whole system agrees on, in a module light enough for ``import orchestrator``."""

from __future__ import annotations

import re

#: A queue's name: a RabbitMQ queue and a database column hold it, so short and plain.
QUEUE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
