"""Apps (pure): which backends are replicas of one app, and where each app is served.

A vassal file's `[fleet]` section names its app, host names and URL path (fleet.vassalfile.app checks
each file alone). Across files two rules hold, decided here:
- the vassals of one app agree on host, path and static: the app's first-seen vassal sets them, and a
  vassal that says otherwise is failed with the reason (the others serve on);
- two apps never claim the same host and path: the app seen later is failed with the reason.
"First seen" is the order the control plane met the backends (oldest first), then new files by name.
Clusters where no file names an app have one app, `default`, on any host at `/`: exactly as before apps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_APP = "default"


@dataclass(frozen=True)
class App:
    """One app as nginx serves it."""

    name: str = DEFAULT_APP
    hosts: tuple[str, ...] = ()  # exact names or *.domain; empty: any host
    path: str = "/"
    static: str = ""

    def where(self) -> str:
        hosts = " ".join(self.hosts) if self.hosts else "any host"
        static = f", static {self.static}" if self.static else ""
        return f"host {hosts}, path {self.path}{static}"


DEFAULT = App()


@dataclass(frozen=True)
class Resolved:
    """The apps nginx serves (first seen first), each backend's app, and the backends failed for a rule."""

    apps: tuple[App, ...]
    app_of: dict[str, str]  # backend -> app name, for every file with a readable identity
    problems: dict[str, str]  # backend -> why it cannot serve its app


def resolve(identities: Mapping[str, App], order: Sequence[str] = ()) -> Resolved:
    """Apply the agreement and the one-claim rules to the backends' identities.

    `identities`: the app each valid vassal file declares; `order`: the backends already known, oldest
    first (the rest follow by name).
    """
    seen = [n for n in order if n in identities]
    ranked = seen + sorted(set(identities) - set(seen))
    first: dict[str, tuple[str, App]] = {}  # app name -> (its first vassal, its identity)
    problems: dict[str, str] = {}
    for name in ranked:
        app = identities[name]
        if app.name not in first:
            first[app.name] = (name, app)
            continue
        leader, agreed = first[app.name]
        if app != agreed:
            problems[name] = (
                f"app {app.name!r}: its vassals must agree on host, path and static; this file says "
                f"{_difference(app, agreed)}, {leader} (seen first) says {_difference(agreed, app)}; make them the same"
            )
    apps: list[App] = []
    claimed: dict[tuple[str, str], str] = {}  # (host or "", path) -> app name
    for app_name, (_leader, app) in first.items():
        clash = next((claimed[k] for k in _claims(app) if k in claimed), None)
        if clash is not None:
            why = (
                f"app {app_name!r} claims {app.where()}, which app {clash!r} (seen first) already serves; "
                "give one of them another host or path"
            )
            for name in ranked:
                if identities[name].name == app_name:
                    problems.setdefault(name, why)
            continue
        for key in _claims(app):
            claimed[key] = app_name
        apps.append(app)
    if not identities or all(a.name == DEFAULT_APP for a in identities.values()):
        if not any(a.name == DEFAULT_APP for a in apps):
            apps.insert(0, DEFAULT)  # no vassal yet: the default app answers (a JSON 503) as it always did
    app_of = {name: identities[name].name for name in ranked}
    return Resolved(tuple(apps), app_of, problems)


def _claims(app: App) -> Iterable[tuple[str, str]]:
    return [(host, app.path) for host in app.hosts] if app.hosts else [("", app.path)]


def _difference(app: App, other: App) -> str:
    parts = []
    if app.hosts != other.hosts:
        parts.append(f"host {' '.join(app.hosts) or '(any)'}")
    if app.path != other.path:
        parts.append(f"path {app.path}")
    if app.static != other.static:
        parts.append(f"static {app.static or '(none)'}")
    return ", ".join(parts)


def groups(names: Iterable[str], app_of: Mapping[str, str]) -> dict[str, set[str]]:
    """`names` by app (a name with no known app is the default app's)."""
    found: dict[str, set[str]] = {}
    for name in names:
        found.setdefault(app_of.get(name, DEFAULT_APP), set()).add(name)
    return found
