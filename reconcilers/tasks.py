"""What a Swarm service's tasks say about it: how many run, how many should, and what went wrong."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reconcilers.swarm_spec import drift
from specs.models import ServiceStatus

ROLLBACK_STATES = frozenset({"rollback_started", "rollback_paused", "rollback_completed"})
# A rollout stuck or going backwards. A completed rollback is settled: whether the spec it left is the one
# wanted is the service reconciler's question, not the tasks'.
UNSETTLED_UPDATE_STATES = frozenset({"paused", "rollback_started", "rollback_paused"})


@dataclass(frozen=True)
class TaskSummary:
    running: int
    desired: int
    update_state: str | None = None
    update_message: str = ""
    # The newest error a task reported ("No such image: ...", "task: non-zero exit (1)"), if not converged.
    problem: str = ""

    @property
    def converged(self) -> bool:
        return self.running == self.desired and self.update_state not in UNSETTLED_UPDATE_STATES

    def status(self) -> ServiceStatus:
        return ServiceStatus(
            running_tasks=self.running, desired_tasks=self.desired, update_state=self.update_state
        )


def _task_problem(task: dict[str, Any]) -> str:
    status = task.get("Status", {})
    error = status.get("Err") or ""
    if not error and status.get("State") in ("failed", "rejected"):
        error = status.get("Message") or status.get("State", "")
    return str(error)


def newest_task_problem(tasks: Iterable[dict[str, Any]]) -> str:
    failures = [task for task in tasks if _task_problem(task)]
    if not failures:
        return ""
    newest = max(failures, key=lambda task: str(task.get("Status", {}).get("Timestamp", "")))
    return _task_problem(newest)


def summarise_tasks(
    tasks: Iterable[dict[str, Any]],
    desired: int | None,
    update_status: dict[str, Any] | None = None,
    template: dict[str, Any] | None = None,
) -> TaskSummary:
    """`desired` None means a global service: one task per eligible node, as Swarm scheduled them.

    With the service's task `template`, only tasks made from it count: right after an update the old
    tasks still run, and they say nothing about whether the new spec works.
    """
    all_tasks = list(tasks)
    current = [
        task
        for task in all_tasks
        if task.get("DesiredState") == "running"
        and (template is None or not drift(task.get("Spec"), template))
    ]
    running = sum(1 for task in current if task.get("Status", {}).get("State") == "running")
    wanted = len(current) if desired is None else desired
    problem = newest_task_problem(all_tasks) if running < wanted else ""
    update_status = update_status or {}
    return TaskSummary(
        running=running,
        desired=wanted,
        update_state=update_status.get("State"),
        update_message=str(update_status.get("Message", "")),
        problem=problem,
    )
