"""`fleet up --tls local`: a certificate authority of this cluster's own, and a server certificate from it.

The CA is made once (run/tls/ca.crt, its key run/tls/ca.key, 0600) and kept across `fleet down` and
`fleet up`: a user trusts it once. The server certificate (run/tls/local/) names localhost, 127.0.0.1,
::1 and the apps' host names; it is made again when that list changes or it nears its end. Everything is
made by the `openssl` command line on this machine; nothing leaves it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from fleet.errors import FleetError, MissingTool
from fleet.layout import Layout
from fleet.proxy import tls
from fleet.vassalfile import vassals

BASE_NAMES = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
SERVER_DAYS = 397  # browsers refuse longer-lived server certificates from public CAs; keep to their rule
RENEW_DAYS = 30
_HOST_RE = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\Z")


def ca_cert(layout: Layout) -> Path:
    return layout.run / "tls" / "ca.crt"


def ca_key(layout: Layout) -> Path:
    return layout.run / "tls" / "ca.key"


def server_pair(layout: Layout) -> tuple[Path, Path]:
    folder = layout.run / "tls" / "local"
    return folder / "server.crt", folder / "server.key"


def app_hosts(layout: Layout) -> list[str]:
    """The host names the vassal files' `[fleet] host =` lines name (exact or `*.domain`)."""
    found: set[str] = set()
    for name in vassals.present(layout.vassals):
        try:
            text = layout.vassal_file(name).read_text(errors="replace")
        except OSError:
            continue
        section = ""
        for line in text.splitlines():
            line = line.split(";", 1)[0].split("#", 1)[0].strip()
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
            elif section == "fleet" and "=" in line:
                key, value = (part.strip() for part in line.split("=", 1))
                if key == "host":
                    found.update(h.lower() for h in value.split() if _HOST_RE.match(h))
    return sorted(found)


def names_for(extra: Iterable[str] = ()) -> list[str]:
    """What the server certificate names: the loopback names, then `extra` (the apps' hosts), once each."""
    names = list(BASE_NAMES)
    for name in extra:
        if name not in names:
            names.append(name)
    return names


def _san(names: list[str]) -> str:
    entries = []
    for name in names:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name)
            entries.append(f"IP:{name}")
        except OSError:
            entries.append(f"DNS:{name}")
    return ",".join(entries)


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise MissingTool("--tls local needs the openssl command: sudo apt-get install -y openssl")
    proc = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise FleetError(f"openssl {args[0]} failed making the local certificate: {proc.stderr.strip()}")


def ensure(layout: Layout, names: list[str]) -> tuple[Path, Path, bool]:
    """The CA (made if missing) and a server certificate for `names` (made again if the names changed, the
    CA changed or it ends within RENEW_DAYS). Returns the server certificate, its key, and whether the
    CA was made now."""
    folder = layout.run / "tls"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    made_ca = not (ca_cert(layout).is_file() and ca_key(layout).is_file())
    if made_ca:
        _make_ca(layout, folder)
    cert, key = server_pair(layout)
    wanted = "\n".join(names) + "\n"
    names_file = cert.parent / "names"
    fingerprint_file = cert.parent / "ca.sha256"
    ca_fingerprint = tls.describe(ca_cert(layout))[0]
    current = (
        cert.is_file()
        and key.is_file()
        and _read(names_file) == wanted
        and _read(fingerprint_file) == ca_fingerprint
        and (tls.describe(cert)[1] or 0) > time.time() + RENEW_DAYS * 86400
    )
    if not current:
        _make_server(layout, names, ca_fingerprint)
    return cert, key, made_ca


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _private_dir(parent: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=".make-", dir=parent))  # 0700: keys are born private


def _make_ca(layout: Layout, folder: Path) -> None:
    work = _private_dir(folder)
    try:
        # The CN tells this CA from another cluster's in a trust store: the machine and the cluster's folder.
        where = hashlib.sha256(str(layout.root).encode()).hexdigest()[:8]
        host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40]
        _openssl(
            "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", str(CA_DAYS), "-sha256",
            "-subj", f"/O=fleet/CN=fleet local CA {host} {where}",
            "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=work,
        )  # fmt: skip
        os.chmod(work / "ca.key", 0o600)
        os.chmod(work / "ca.crt", 0o644)
        os.replace(work / "ca.key", ca_key(layout))  # the key first: a ca.crt is never there without it
        os.replace(work / "ca.crt", ca_cert(layout))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _make_server(layout: Layout, names: list[str], ca_fingerprint: str) -> None:
    cert, key = server_pair(layout)
    cert.parent.mkdir(mode=0o700, exist_ok=True)
    work = _private_dir(cert.parent)
    try:
        (work / "ext.cnf").write_text(
            f"subjectAltName={_san(names)}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", f"/O=fleet/CN={names[0]}",
            cwd=work,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", "server.csr", "-CA", str(ca_cert(layout)), "-CAkey", str(ca_key(layout)),
            "-set_serial", f"0x{os.urandom(16).hex()}", "-days", str(SERVER_DAYS), "-sha256",
            "-extfile", "ext.cnf", "-out", "server.crt",
            cwd=work,
        )  # fmt: skip
        os.chmod(work / "server.key", 0o600)
        os.replace(work / "server.key", key)
        os.replace(work / "server.crt", cert)
        (cert.parent / "names").write_text("\n".join(names) + "\n")
        (cert.parent / "ca.sha256").write_text(ca_fingerprint)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def how_to_trust(layout: Layout, https_url: str) -> str:
    """What to tell the user: how curl, the system and browsers come to trust the CA."""
    ca = ca_cert(layout)
    return (
        f"fleet: HTTPS certificates from the local CA {ca} (made once, kept across `fleet down`/`up`). To trust it:\n"
        f"  curl:     curl --cacert {ca} {https_url}\n"
        f"  system:   sudo cp {ca} /usr/local/share/ca-certificates/fleet-local-ca.crt && sudo update-ca-certificates\n"
        f"  Chromium: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n fleet-local-ca -i {ca}  (libnss3-tools)\n"
        f"  Firefox:  Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import {ca}\n"
    )
