"""File events: watchdog only wakes the control plane's loop; the loop decides what changed."""

from __future__ import annotations

import threading
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer as FileWatcher
from watchdog.observers.api import BaseObserver


class _Wake(FileSystemEventHandler):
    def __init__(self, wake: threading.Event):
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("opened", "closed_no_write"):
            self.wake.set()


def watch_folders(folders: list[Path], wake: threading.Event) -> BaseObserver:
    """Start watchdog's inotify observer on `folders`, setting `wake` on every change; stop() it."""
    watcher = FileWatcher()
    handler = _Wake(wake)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        watcher.schedule(handler, str(folder), recursive=False)
    watcher.daemon = True
    watcher.start()
    return watcher
