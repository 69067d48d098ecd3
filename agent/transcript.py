"""A run's conversation with the LLM, turn by turn, as sent and as received (stub)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import models


@dataclass(slots=True)
class Transcript:
    model: str

    def view(
        self, *, incident_id: str, occurrence: int, redact: Callable[[str], str]
    ) -> models.Transcript:
        return models.Transcript(
            incident_id=incident_id, occurrence=occurrence, model=self.model, turns=[]
        )
