"""Journey definitions for tests, built instead of written out each time."""

from __future__ import annotations

from typing import Any


def mail(subject: str, html: str = "<p>hi</p>") -> dict[str, Any]:
    return {"type": "send_email", "subject": subject, "html": html}


def wait(duration: str) -> dict[str, Any]:
    return {"type": "wait", "duration": duration}


def linear_journey(key: str, name: str, *steps: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """`steps` (id, step) one after the other, then an `end` step."""
    ids = [step_id for step_id, _ in steps] + ["end"]
    return {
        "key": key,
        "name": name,
        "entry": {"type": "api"},
        "start": ids[0],
        "steps": {
            **{step_id: {**step, "next": ids[i + 1]} for i, (step_id, step) in enumerate(steps)},
            "end": {"type": "end"},
        },
    }


def journey(
    key: str,
    *,
    steps: dict[str, dict[str, Any]],
    start: str | None = None,
    name: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A journey enrolled through the API, starting at `start` (the first step if absent);
    `extra` adds journey-level fields (entry, reentry, exit_if)."""
    return {
        "key": key,
        "name": name or key.replace("-", " ").capitalize(),
        "entry": {"type": "api"},
        "start": start or next(iter(steps)),
        "steps": steps,
        **extra,
    }
