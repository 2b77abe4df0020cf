"""Enqueue myapp's jobs through a running Orchestrator API and print their results.

    python enqueue.py to be or not to be

ORCHESTRATOR_URL is the API (default http://localhost:5001); ORCHESTRATOR_API_KEY its key, if
the API has keys. Run it from this folder (or with myapp installed) so `myapp` imports.
"""

from __future__ import annotations

import json
import os
import sys

from orchestrator import Client

from myapp.jobs import shout, word_count


def main(words: list[str]) -> None:
    text = " ".join(words) or "to be or not to be"
    url = os.environ.get("ORCHESTRATOR_URL", "http://localhost:5001")
    with Client(url, api_key=os.environ.get("ORCHESTRATOR_API_KEY")) as client:
        counted = client.enqueue(word_count.call(text))
        shouted = client.enqueue(shout.call(text), retries=1)
        print(json.dumps(client.wait(counted, timeout=60), sort_keys=True))
        print(client.wait(shouted, timeout=60))


if __name__ == "__main__":
    main(sys.argv[1:])
