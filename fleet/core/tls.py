"""Certificate rotation (pure): which certificate and key pair nginx serves, and why a pair is refused.

The control plane looks at the two files the operator named (--tls-cert, --tls-key) about once a second
and hands what it saw here: their identity (inode, size, mtime) and, when asked to, the result of loading
them. A changed pair is loaded only once it has stayed the same for one look, so that a cert written a
moment before its key is not refused for the moment in between. A valid pair is installed (nginx reads it
at the next handshake: no reload); a bad one is refused with the reason and the last good one keeps
serving.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

RENEW_SOON = 14 * 86400.0  # a certificate expiring sooner than this is served, with a warning


@dataclass(frozen=True)
class FileId:
    """What tells one version of a file from another without reading it."""

    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class PairId:
    """The certificate's and the key's FileId; None: the file is missing or cannot be looked at."""

    cert: FileId | None
    key: FileId | None


@dataclass(frozen=True)
class Loaded:
    """What loading a pair told (fleet/proxy/tls.py does it): `problem` is None when the key matches the
    certificate; `fingerprint` (SHA-256 of the certificate) and `not_after` (epoch) when it could be read."""

    problem: str | None
    fingerprint: str = ""
    not_after: float | None = None
    serial: str = ""


@dataclass(frozen=True)
class Watch:
    """What the control plane remembers between looks."""

    seen: PairId | None = None  # at the last look
    decided: PairId | None = None  # the version last installed or refused
    serving: str = ""  # the fingerprint of the pair nginx serves ("" before the first)
    serving_serial: str = ""
    serving_not_after: float | None = None
    refused: str = ""  # why the last changed pair was refused ("" once a good one is installed)
    refused_at: float | None = None


@dataclass(frozen=True)
class Verdict:
    """install: copy the pair for nginx; refuse: keep the last good one; `message` says which and why."""

    install: bool
    message: str


def needs_loading(w: Watch, now_id: PairId) -> tuple[Watch, bool]:
    """After one look: whether to load the pair now (it changed since it was last decided upon and stayed
    the same since the last look)."""
    settled = now_id == w.seen
    return replace(w, seen=now_id), settled and now_id != w.decided


def judge(w: Watch, now_id: PairId, loaded: Loaded, now: float) -> tuple[Watch, Verdict | None]:
    """The verdict on a loaded pair; None when it is the pair already served (nothing to do, nothing to say)."""
    w = replace(w, decided=now_id)
    problem = loaded.problem or expired(loaded.not_after, now)
    if problem:
        keep = "kept the last good one" if w.serving else "nothing to serve over HTTPS yet"
        return replace(w, refused=problem, refused_at=now), Verdict(False, f"refused the new pair: {problem}; {keep}")
    if loaded.fingerprint == w.serving:
        return replace(w, refused="", refused_at=None), None
    w = replace(
        w,
        serving=loaded.fingerprint,
        serving_serial=loaded.serial,
        serving_not_after=loaded.not_after,
        refused="",
        refused_at=None,
    )
    message = f"serving certificate serial {loaded.serial or '?'} (sha256 {loaded.fingerprint[:16]}...)"
    soon = expiring(loaded.not_after, now)
    return w, Verdict(True, message + (f"; {soon}" if soon else ""))


def expired(not_after: float | None, now: float) -> str:
    if not_after is not None and not_after <= now:
        return "the certificate has expired; renew it"
    return ""


def expiring(not_after: float | None, now: float) -> str:
    if not_after is not None and not_after - now < RENEW_SOON:
        return f"it expires in {max(0.0, (not_after - now) / 86400):.1f} days"
    return ""


def reason(kind: str, detail: str, cert: str, key: str) -> str:
    """One line for a pair that failed to load: `kind` is missing-cert, missing-key, unreadable-cert,
    unreadable-key or ssl (detail: OpenSSL's words), with what to do."""
    if kind == "missing-cert":
        return f"{cert}: no such file"
    if kind == "missing-key":
        return f"{key}: no such file"
    if kind == "unreadable-cert":
        return f"{cert}: cannot be read ({detail}); let the user running fleet read it"
    if kind == "unreadable-key":
        return f"{key}: cannot be read ({detail}); let the user running fleet read it"
    low = detail.lower()
    if "key values mismatch" in low or "key_values_mismatch" in low:
        return f"{key} is not the key of {cert} (key values mismatch); give the pair that belongs together"
    if "pem lib" in low or "no start line" in low or "bad base64" in low:
        return f"{cert} or {key} is not a PEM certificate and an unencrypted PEM private key ({detail})"
    if "bad decrypt" in low or "password" in low or "interrupted or cancelled" in low:
        return f"{key} is encrypted; give the key without a passphrase (openssl pkey -in KEY -out NEW)"
    return f"{cert} and {key} do not load as a certificate and its key ({detail})"
