"""The in-memory serving backend of ``fakes.py``, kept in a JSON file: what the slots run and the weights survive
the process that set them, as a real router's and slots' state would survive a SIGKILLed Airflow task."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .fakes import FakeBackend


class FileBackend(FakeBackend):
    def __init__(self, path: Path | str):
        super().__init__()
        self.path = Path(path)
        self._busy = False
        self._load()

    def _load(self) -> None:
        if self.path.exists() and not self._busy:  # not in the middle of a change of this process
            state = json.loads(self.path.read_text())
            self.slots, self._weights, self.down = state["slots"], state["weights"], set(state["down"])

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"slots": self.slots, "weights": self._weights, "down": sorted(self.down)}))
        os.replace(tmp, self.path)  # atomic: a kill leaves the old state or the new one

    def _change(self, method, *args):
        self._load()
        self._busy = True
        try:
            return method(*args)
        finally:
            self._busy = False
            self._save()

    def deploy(self, slot, model_version):
        return self._change(super().deploy, slot, model_version)

    def set_weights(self, weights):
        self._change(super().set_weights, weights)

    def stop(self, slot):
        self._change(super().stop, slot)

    def weights(self):
        self._load()
        return super().weights()

    def status(self):
        self._load()
        return super().status()

    def live_metrics(self, slot, since):
        self._load()
        return super().live_metrics(slot, since)

    def smoke_test(self, slot):
        self._load()
        super().smoke_test(slot)

    def serving(self):
        self._load()
        return super().serving()
