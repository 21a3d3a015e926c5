"""Steady, bounded client traffic on the serving router while the demo runs, so bake windows judge live requests.

Loopback only, one request at a time at a fixed pace, and bounded in count and time: it stops by itself. Before
the first promotion there is no router yet; refused connections are counted apart, not as failed requests.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Traffic:
    """``with Traffic(url, model, prompts): ...`` sends completions to ``url`` until the block ends."""

    def __init__(
        self,
        url: str,
        model: str,
        prompts: Sequence[str],
        *,
        rate_per_s: float = 4.0,
        max_requests: int = 20_000,
        max_seconds: float = 3600.0,
    ) -> None:
        if urlsplit(url).hostname not in LOOPBACK:
            raise ValueError(f"demo traffic goes to loopback only, not {url}")
        if not prompts:
            raise ValueError("demo traffic needs at least one prompt")
        self.url, self.model, self.prompts = url.rstrip("/"), model, list(prompts)
        self.interval, self.max_requests, self.max_seconds = 1.0 / rate_per_s, max_requests, max_seconds
        self.counts: Counter[str] = Counter()
        """``ok``, ``failed`` (an HTTP error or timeout from the router) and ``no_router`` (refused)."""
        self.versions: Counter[str] = Counter()
        """Answers per serving model version (``model`` of each response)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clm-demo-traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=httpx.Timeout(30.0, connect=1.0), trust_env=False) as http:
            for i in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                started = time.monotonic()
                body = {"model": self.model, "prompt": self.prompts[i % len(self.prompts)], "max_tokens": 16}
                try:
                    answer = http.post(f"{self.url}/v1/completions", json=body)
                    if answer.status_code == 200:
                        self.counts["ok"] += 1
                        self.versions[answer.json().get("model", "?")] += 1
                    else:
                        self.counts["failed"] += 1
                except httpx.ConnectError:
                    self.counts["no_router"] += 1
                except httpx.HTTPError:
                    self.counts["failed"] += 1
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
