"""What the core asks the effects to do, in order; a failed action stops the ones after it (pure values)."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.core.apps import App


@dataclass(frozen=True)
class Route:
    """Make nginx send new requests to exactly these backends; with `apps`, serve exactly these apps first."""

    names: frozenset[str]
    apps: tuple[App, ...] | None = None  # None: the apps nginx serves stay as they are
    app_of: tuple[tuple[str, str], ...] = ()  # (backend, app) of the routed backends not in the default app


@dataclass(frozen=True)
class WakeEmperor:
    """Make the Emperor rescan vassals/ now (it starts, reloads and stops vassals on what it finds)."""


@dataclass(frozen=True)
class ReloadThroughFifo:
    """Reload one vassal gracefully through its master FIFO: the Emperor misses a change within a second."""

    name: str


@dataclass(frozen=True)
class ClearBlacklist:
    """Make the Emperor forget its failing vassals, so a fixed file starts at once."""


@dataclass(frozen=True)
class Forget:
    """A removed vassal is gone: delete what it left (sockets uWSGI's vacuum misses, the drain request)."""

    name: str


Action = Route | WakeEmperor | ReloadThroughFifo | ClearBlacklist | Forget
