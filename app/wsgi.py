"""The example service that every vassal runs.

uWSGI looks for the WSGI callable named `application` (its default), so that is the Flask app's name.
Each vassal learns its own name from FLEET_VASSAL, which fleet's vassal launcher sets from the file name.
"""

from __future__ import annotations

import os
import socket
import time

from flask import Flask, jsonify, request

application = Flask(__name__)

BACKEND = os.environ.get("FLEET_VASSAL", "standalone")
HOST = socket.gethostname()  # in a Swarm cell: its container, so answers say which cell served them
LOADED_AT = time.time()  # changes on every reload: shows that fresh code was imported
MAX_SLOW_SECONDS = 10.0


@application.get("/")
def index():
    """Say which host (cell), backend and worker answered."""
    return jsonify(backend=BACKEND, host=HOST, pid=os.getpid(), loaded_at=LOADED_AT)


@application.get("/healthz")
def healthz():
    """Readiness: 200 once the app is imported and serving."""
    return jsonify(status="ok", backend=BACKEND)


@application.get("/slow")
def slow():
    """Answer after `?seconds=` (capped), to show that in-flight requests survive reloads and removals."""
    seconds = min(float(request.args.get("seconds", "1")), MAX_SLOW_SECONDS)
    time.sleep(seconds)
    return jsonify(backend=BACKEND, pid=os.getpid(), slept=seconds)


@application.post("/upload")
def upload():
    """Count the request body's bytes: uploads and other non-idempotent requests through nginx."""
    body = request.get_data(cache=False)
    return jsonify(backend=BACKEND, pid=os.getpid(), bytes=len(body))
