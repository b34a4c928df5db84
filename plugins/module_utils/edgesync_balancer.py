"""Shared code of the edgesync modules: the host's HAProxy, read on the host.

A host that fronts farms (roles/balancer) runs one HAProxy with its runtime API
on a unix socket (the fleet's ``edgesync_balancer_socket``, level admin, root
only). ``show stat`` on it answers CSV: a header line ``# pxname,svname,...``
then a line per proxy and server. The servers of a backend are the rows whose
``svname`` is neither FRONTEND nor BACKEND; their ``status`` is UP, DOWN,
DRAIN, MAINT, NOLB, or a transition such as ``UP 1/2`` (going down after one
failed check) or ``DOWN 1/2`` (coming back), and ``scur`` the sessions they
hold now.
"""

from __future__ import annotations

import socket

# Rows of show stat that are a proxy's own, not one of its servers.
PROXY_ROWS = ("FRONTEND", "BACKEND")
TIMEOUT_S = 5.0


def parse_stat(text: str) -> dict:
    """The backends' servers in ``show stat`` CSV: {backend: {server:
    {"status": str, "sessions": int | None}}}, in HAProxy's order. Raises
    ValueError on text that is not show stat's CSV."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        first = lines[0][:80] if lines else "nothing"
        raise ValueError(f"not HAProxy's show stat: {first!r}")
    head = lines[0][2:].split(",")
    if not {"pxname", "svname", "status"} <= set(head):
        raise ValueError("HAProxy's show stat lacks pxname, svname or status")
    out: dict[str, dict] = {}
    for line in lines[1:]:
        cells = dict(zip(head, line.split(","), strict=False))
        server = cells.get("svname")
        if not server or server in PROXY_ROWS:
            continue
        scur = cells.get("scur", "")
        out.setdefault(cells["pxname"], {})[server] = {
            "status": cells.get("status", ""),
            "sessions": int(scur) if scur.isdigit() else None,
        }
    return out


def command(path: str, line: str, timeout: float = TIMEOUT_S) -> str:
    """One command on HAProxy's runtime API at ``path``, its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def state(path: str) -> dict:
    """What this host's HAProxy says of its backends' servers: {"socket": path,
    "backends": {backend: {server: {status, sessions}}}, "error": None}, or
    "backends" empty and "error" one line saying why it could not be read."""
    out = {"socket": path, "backends": {}, "error": None}
    try:
        out["backends"] = parse_stat(command(path, "show stat"))
    except FileNotFoundError:
        out["error"] = f"no HAProxy runtime API at {path} (no such socket)"
    except PermissionError:
        out["error"] = f"HAProxy runtime API at {path}: permission denied"
    except ConnectionRefusedError:
        out["error"] = f"HAProxy runtime API at {path}: connection refused (HAProxy not running?)"
    except TimeoutError:
        out["error"] = f"HAProxy runtime API at {path}: no answer in {TIMEOUT_S:.0f} s"
    except OSError as exc:
        out["error"] = f"HAProxy runtime API at {path}: {exc.strerror or exc}"
    except ValueError as exc:
        out["error"] = f"HAProxy runtime API at {path}: {exc}"
    return out
