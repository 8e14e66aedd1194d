"""The control-plane process: builds the loop's subscribers (the metrics and the admin listener's feed,
only when the admin listener is wanted) and hands them to the loop."""

from __future__ import annotations

import logging

from fleet.control.admin import AdminServer, Feed
from fleet.control.metrics import Metrics
from fleet.control.runtime import Runtime
from fleet.core.settings import Settings
from fleet.layout import Layout
from fleet.proxy.nginxstats import NginxView
from fleet.proxy.static import DEFAULT_MAX_AGE
from fleet.published.events import read_events
from fleet.published.parts import running_parts
from fleet.vassalfile.vassals import Caps

log = logging.getLogger("fleet.control")


def main(
    layout: Layout,
    settings: Settings,
    admin: tuple[str, int] | None = None,
    polling: bool = False,
    uwsgi_bin: str | None = None,
    caps: Caps | None = None,
    tls_pair: tuple[str, str] | None = None,
    static_max_age: int = DEFAULT_MAX_AGE,
) -> int:
    """The control plane; with `admin` (address, port), also the admin listener (status page, /metrics)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    layout.make_run_dirs()
    if admin is None:
        Runtime(layout, settings, uwsgi_bin=uwsgi_bin, caps=caps, tls_pair=tls_pair, static_max_age=static_max_age).run(
            polling
        )
        return 0
    # Every counter lives in the metrics; the feed tells the status page what changed.
    metrics = Metrics(parts=lambda: running_parts(layout, asking="control"), nginx_view=NginxView(layout))
    # The page's timeline is of backends: fleet's own notes ([https]: old and new both None) stay out of it.
    feed = Feed(seed=[e for e in read_events(layout.events_file) if e.old is not None or e.new is not None])
    runtime = Runtime(
        layout,
        settings,
        subscribers=(metrics, feed),
        uwsgi_bin=uwsgi_bin,
        caps=caps,
        tls_pair=tls_pair,
        static_max_age=static_max_age,
    )
    listener = AdminServer(layout, metrics, feed, runtime.snapshot, *admin)
    server: AdminServer | None = listener
    runtime.admin_asked_at = lambda: listener.asked_at  # a page or scraper watching: fresh usage each second
    try:
        listener.start()
        log.info("admin listener (status page, /metrics) on %s", listener.url)
    except OSError as e:  # the cluster serves without it: the data path must not depend on it
        log.error("admin listener: cannot listen on %s:%d (%s); running without it", *admin, e.strerror or e)
        server = None
    try:
        runtime.run(polling)
    finally:
        if server is not None:
            server.stop()
    return 0
