"""A kind, registered once: its records, its reconcilers in the order their dependencies ask, its status.

The runtime dispatches on `Request.kind` and knows nothing else of a kind: a new kind costs a model in
specs/, a RecordStore, its reconcilers and one Kind here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from controller.types import Reconciler
from specs.models import Model, Resource
from store.records import RecordStore

R = TypeVar("R", bound=Resource)


def _nothing(_record: Any) -> Mapping[str, object]:
    return {}


@dataclass(frozen=True)
class Kind(Generic[R]):
    records: RecordStore[R]
    reconcilers: Sequence[Reconciler[R]]
    # Status fields the kind derives from the record itself, beside the conditions and the reconcilers'
    # parts (a site's URLs).
    describe: Callable[[R], Mapping[str, object]] = field(default=_nothing)
    # What the others stand on (the platform): the resync reconciles its records, and waits for them,
    # before it observes and wakes the other kinds.
    first: bool = False

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for reconciler in self.reconcilers:
            if reconciler.name in seen:
                raise ValueError(f"{self.name}: two reconcilers are named {reconciler.name!r}")
            missing = [name for name in reconciler.after if name not in seen]
            if missing:
                raise ValueError(
                    f"{self.name}: {reconciler.name} needs {', '.join(missing)}, which must come before it"
                )
            seen.add(reconciler.name)

    @property
    def name(self) -> str:
        return self.records.kind.kind

    @property
    def status_model(self) -> type[Model]:
        return self.records.kind.status

    def status_field(self, reconciler: str) -> str:
        """The status field a reconciler's part is kept in: its own name."""
        if reconciler not in self.status_model.model_fields:
            raise ValueError(f"{self.status_model.__name__} has no field for the part of {reconciler}")
        return reconciler
