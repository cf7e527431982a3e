"""The local model servers' admin token: one per local cluster, shared by the data plane (which starts
the servers with it) and the fault tools (which call the admin API with it)."""

from __future__ import annotations

import os
import secrets

from localcluster.controlplane import STATE_DIR

ADMIN_TOKEN_FILE = STATE_DIR / "model-admin-token"


def admin_token() -> str:
    """The local cluster's model-server admin token: read from ADMIN_TOKEN_FILE, created there (mode 0600,
    atomically: the first creator wins) when missing."""
    try:
        token = ADMIN_TOKEN_FILE.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    ADMIN_TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    draft = ADMIN_TOKEN_FILE.with_name(f".{ADMIN_TOKEN_FILE.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32))
    try:
        os.link(draft, ADMIN_TOKEN_FILE)  # never a half-written token: link fails if another one is there
    except FileExistsError:
        pass
    finally:
        draft.unlink(missing_ok=True)
    return ADMIN_TOKEN_FILE.read_text().strip()
