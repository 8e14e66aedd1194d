"""Static folders served by nginx itself (a vassal's `[fleet] static = /prefix folder`): no worker sees them.

`location()` renders the block of one mount (pure; `url_prefix()` puts an app's static prefix under its
path), `error_locations()` the named locations those blocks answer errors with (once per nginx `server`),
`render()` the include of a server's mounts (both). `StaticFolders` (the control plane's) writes that
include, validates it with `nginx -t` and reloads nginx only when it changed (the last good one kept);
`unreadable()` says why nginx's workers could not read a folder.

What the block guarantees, and why each line is there:
- `alias` with a trailing slash on both sides, in a `^~` prefix location ending in a slash: `/static../x`
  and `/static` are not under the prefix (the classic off-by-slash would serve the folder's parent), and no
  regex location can take a request under it.
- No directory listing: a request for a folder is a JSON 404 (not a 403, nor a redirect to `folder/`).
- ETag and Last-Modified: nginx's defaults, so conditional requests get 304.
- Cache-Control: a short max-age (the setting --static-max-age), and a year plus `immutable` for
  fingerprinted names (`app.3f9c2b.css`: a dot, 6+ hex digits, a dot, an extension), which change name
  when they change content.
- gzip for text types, and `gzip_static`: a precompressed `name.gz` beside a file is sent as is.
- Symlinks are not followed below the folder (`disable_symlinks on`; a JSON 404): one could lead out of it.
- A missing file is a JSON 404 from nginx, like fleet's other errors.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fleet.errors import FleetError, NginxConfigError
from fleet.layout import Layout, write_atomically

log = logging.getLogger("fleet.control")

IMMUTABLE = "public, max-age=31536000, immutable"
# A fingerprinted name: `.3f9c2b.` (6+ hex digits between dots) before the last extension.
FINGERPRINT = r"\.[0-9a-fA-F]{6,}\.[A-Za-z0-9]+$"
GZIP_TYPES = ("text/css", "application/javascript", "image/svg+xml", "application/json", "text/plain")
# nginx.conf includes no mime.types (its location differs between systems): the types static files need.
TYPES = (
    ("text/html", "html htm"),
    ("text/css", "css"),
    ("application/javascript", "js mjs"),
    ("application/json", "json map"),
    ("text/plain", "txt"),
    ("text/xml", "xml"),
    ("image/svg+xml", "svg svgz"),
    ("image/png", "png"),
    ("image/jpeg", "jpg jpeg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("image/avif", "avif"),
    ("image/x-icon", "ico"),
    ("font/woff", "woff"),
    ("font/woff2", "woff2"),
    ("font/ttf", "ttf"),
    ("font/otf", "otf"),
    ("application/wasm", "wasm"),
    ("application/pdf", "pdf"),
    ("video/mp4", "mp4"),
    ("video/webm", "webm"),
    ("audio/mpeg", "mp3"),
)
_SAFE_PREFIX_RE = re.compile(r"(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+\Z")
_UNSAFE_PATH_RE = re.compile(r"[\s\"'\\$;{}\x00-\x1f\x7f]")
DEFAULT_MAX_AGE = 300


@dataclass(frozen=True)
class Mount:
    """One folder served at a URL prefix (the app's path joined with its `static` prefix)."""

    prefix: str
    folder: Path


def url_prefix(app_path: str, static_prefix: str) -> str:
    """Where an app's static prefix is served: under the app's path (`/blog` + `/static` -> `/blog/static`)."""
    return app_path.rstrip("/") + static_prefix


def json_error(status: int, error: str, indent: int = 8) -> str:
    """An nginx `return` of a JSON error (the text goes inside single quotes: it may hold none)."""
    if any(c in error for c in "'\\\"$"):
        raise ValueError(f"{error!r} cannot be written into an nginx return")
    return f'default_type application/json;\n{" " * indent}return {status} \'{{"error": "{error}"}}\\n\';'


def location(mount: str, folder: Path, max_age: int = DEFAULT_MAX_AGE) -> str:
    """The nginx `location` block serving `folder` (absolute, symlinks resolved) at the URL prefix `mount`.

    Raises ValueError for a prefix or folder that cannot be written into nginx's configuration safely.
    """
    if not _SAFE_PREFIX_RE.match(mount) or "/../" in mount + "/" or "/./" in mount + "/":
        raise ValueError(f"{mount!r} is not a URL prefix fleet can serve static files at")
    if not folder.is_absolute() or _UNSAFE_PATH_RE.search(str(folder)):
        raise ValueError(f"{str(folder)!r} is not an absolute folder nginx's configuration can name")
    if max_age < 0:
        raise ValueError("max_age is a number of seconds, 0 or more")
    base = str(folder).rstrip("/") or "/"
    alias = base if base.endswith("/") else base + "/"
    types = "\n".join(f"            {mime} {extensions};" for mime, extensions in TYPES)
    missing = f"no such file under {mount}/"
    return f"""\
    # [fleet] static: {mount}/ is {folder}, served by nginx (no vassal sees these requests).
    location ^~ {mount}/ {{
        alias {alias};
        types {{
{types}
        }}
        default_type application/octet-stream;
        autoindex off;
        # Only files: a folder named without its slash is a 404, not a redirect to `folder/`.
        try_files $uri =404;
        disable_symlinks on from={base};
        etag on;
        add_header Cache-Control "max-age={max_age}";
        gzip on;
        gzip_static on;
        gzip_vary on;
        gzip_proxied any;
        gzip_min_length 256;
        gzip_types {" ".join(GZIP_TYPES)};
        error_page 404 = @fleet_static_404;
        error_page 403 = @fleet_static_403;
        error_page 405 = @fleet_static_405;
        # The nested locations have no try_files: there, nginx would redirect a folder to `folder/`.
        error_page 301 = @fleet_static_404;
        # A folder: no listing, and no sign that it exists.
        location ~ /$ {{
            {json_error(404, missing, 12)}
        }}
        location ~ "{FINGERPRINT}" {{
            add_header Cache-Control "{IMMUTABLE}";
        }}
    }}
    location = {mount} {{
        {json_error(404, missing)}
    }}
"""


def error_locations() -> str:
    """The named locations the static blocks answer their errors with: once per nginx `server`."""
    return f"""\
    location @fleet_static_404 {{
        {json_error(404, "no such file")}
    }}
    location @fleet_static_403 {{
        {json_error(403, "this file cannot be served: the nginx workers may not read it (see nginx-error.log)")}
    }}
    location @fleet_static_405 {{
        add_header Allow "GET, HEAD" always;
        {json_error(405, "static files answer GET and HEAD only")}
    }}
"""


def render(mounts: Iterable[Mount], max_age: int = DEFAULT_MAX_AGE) -> str:
    """The include of one server's static mounts (sorted: the file changes only when its meaning does)."""
    ordered = sorted(set(mounts), key=lambda m: (m.prefix, str(m.folder)))
    head = "# Generated by fleet's control plane from the vassals' [fleet] static; do not edit.\n"
    if not ordered:
        return head
    return head + "".join(location(m.prefix, m.folder, max_age) for m in ordered) + error_locations()


def write_checked(layout: Layout, content: str) -> bool:
    """Write run/nginx/static.conf and validate it with `nginx -t`; on a bad config put the last good one
    back and raise. Returns False when the file already held `content`."""
    from fleet.proxy import nginx  # nginx imports this module for its initial (empty) include

    target = static_conf(layout)
    try:
        previous: str | None = target.read_text()
    except OSError:
        previous = None
    if previous == content:
        return False
    write_atomically(target, content)
    ok, output = nginx.test_config(layout)
    if not ok:
        if previous is not None:
            write_atomically(target, previous)
        raise NginxConfigError(f"nginx rejected the static folders; kept the last good ones:\n{output}")
    return True


def apply(layout: Layout, content: str) -> bool:
    """write_checked(), then reload nginx if the file changed. Returns whether it did."""
    from fleet.proxy import nginx

    if not write_checked(layout, content):
        return False
    nginx.reload(layout)
    return True


def static_conf(layout: Layout) -> Path:
    return layout.nginx_dir / "static.conf"


def unreadable(folder: Path, user: str | None, limit: int = 1000) -> str:
    """Why nginx's workers (running as `user`; None: as this process's user) cannot serve `folder`, or "".

    They need to search every folder from / down to it, and read its files; the first `limit` entries are
    looked at (the cost of a pass stays bounded)."""
    if user is None:
        uid, gids = os.geteuid(), set(os.getgroups()) | {os.getegid()}
        who = "nginx's workers (this user)"
    else:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            return ""
        uid = pw.pw_uid
        gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
        who = f"nginx's workers ({user})"
    if uid == 0:
        return ""

    def allowed(st: os.stat_result, bit: int) -> bool:  # bit: 4 read, 1 search
        if st.st_uid == uid:
            return bool(st.st_mode >> 6 & bit)
        if st.st_gid in gids:
            return bool(st.st_mode >> 3 & bit)
        return bool(st.st_mode & bit)

    for step in [*reversed(folder.parents), folder]:
        try:
            st = os.stat(step)
        except OSError as e:
            return f"{who} cannot reach {folder}: {step}: {e.strerror}"
        if not allowed(st, 1):
            return f"{who} cannot pass through {step} (mode {stat.S_IMODE(st.st_mode):o}); run `chmod o+x {step}`"
    seen = 0
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            seen += 1
            if seen > limit:
                return ""
            path = Path(root) / name
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and not allowed(st, 1):
                return f"{who} cannot pass through {path} (mode {stat.S_IMODE(st.st_mode):o}); run `chmod o+x {path}`"
            if stat.S_ISREG(st.st_mode) and not allowed(st, 4):
                return f"{who} cannot read {path} (mode {stat.S_IMODE(st.st_mode):o}); run `chmod o+r {path}`"
    return ""


class StaticFolders:
    """The control plane's side: keeps run/nginx/static.conf equal to the mounts the vassals agree on.
    nginx is reloaded only when that file's content changes (never when a backend comes or goes)."""

    def __init__(self, layout: Layout, max_age: int = DEFAULT_MAX_AGE, worker_user: str | None = None):
        self.layout, self.max_age, self.worker_user = layout, max_age, worker_user
        self.reloads, self.error = 0, ""
        self._last: str | None = None  # the content last written, or last refused (not tried again)
        # Written while nginx was not running yet: it may have read the file before, so reload once it runs.
        self._unapplied = False

    def update(self, mounts: Iterable[Mount]) -> None:
        """Apply `mounts` (the prefix under the app's path, the folder as configured: resolved here)."""
        from fleet.proxy import nginx

        resolved = [Mount(m.prefix, Path(os.path.realpath(m.folder))) for m in mounts]
        unservable = ""
        try:
            content = render(resolved, self.max_age)
        except ValueError as e:  # a symlinked folder resolving to a path nginx cannot name
            content, unservable = render([]), f"{e}; serving no static folder"
            self._fail(unservable)
        if content == self._last and not self._unapplied:
            return
        if content != self._last:
            for mount in resolved:
                if why := unreadable(mount.folder, self.worker_user):
                    log.warning(
                        "static %s/ (%s): %s; nginx answers 404 for what it cannot read",
                        mount.prefix,
                        mount.folder,
                        why,
                    )
        self._last = content
        try:
            changed = write_checked(self.layout, content) or self._unapplied
        except (FleetError, OSError) as e:  # refused by `nginx -t`: not tried again until the mounts change
            self._fail(str(e))
            return
        if changed and nginx.master_pid(self.layout) is None:
            self._unapplied = True
            return
        if changed:
            try:
                nginx.reload(self.layout)
            except (FleetError, OSError) as e:  # the file is written: reload at the next pass
                self._unapplied = True
                self._fail(str(e))
                return
        self.error, self._unapplied = unservable, False
        if changed:
            self.reloads += 1
            shown = ", ".join(f"{m.prefix}/ -> {m.folder}" for m in sorted(resolved, key=lambda m: m.prefix))
            log.info("static folders served by nginx: %s (nginx reloaded)", shown or "none")

    def _fail(self, error: str) -> None:
        if error != self.error:  # once per error, not once per pass
            log.error("static folders: %s", error)
        self.error = error
