# -*- test-case-name: tests.test_ovn_status -*-
"""
The status of the C{ovn} lookup's replica, for the operator: written by the agent to
C{$state_path/ovn-sb-replica.json} at every change of state, read by
C{mdsvc-manage ovn-status}, which says how old the replica is now.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

STATUS_FILE = "ovn-sb-replica.json"


def write_status(path: str, status: dict[str, Any]) -> None:
    """Write C{status} as JSON to C{path} at once (a reader never sees half of it)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(status, f, sort_keys=True)
        f.write("\n")
    os.replace(temporary, path)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_status(path: str, now: float | None = None) -> list[str]:
    """
    The status in lines for a person: the state, the member, the replica's age now, its size.

    @raise ValueError: the file cannot be read (one line naming it).
    """
    try:
        with open(path) as f:
            status = json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror or e} (is the agent running with [mdsvc] lookup = ovn?)") from None
    except ValueError:
        raise ValueError(f"{path}: not a status file") from None
    now = time.time() if now is None else now
    state = status.get("state")
    synced_at = status.get("synced_at")
    max_age = status.get("max_age")
    lines = []
    if not _alive(status.get("pid")):
        lines.append(f"agent: not running (process {status.get('pid')} is gone); what it last wrote:")
    lines.append(f"state: {state}" + (f" (member {status['remote']})" if status.get("remote") else ""))
    if state == "in-sync":
        lines.append("replica age: 0 s (in sync)")
    elif synced_at is None:
        lines.append("replica age: none (never in sync)")
    else:
        age = max(0.0, now - synced_at)
        serving = "answering" if isinstance(max_age, int | float) and age <= max_age else "refusing lookups (503)"
        lines.append(f"replica age: {age:.1f} s (max {max_age:g} s: {serving})")
    lines.append(f"members: {', '.join(status.get('remotes') or [])}")
    lines.append(f"port bindings: {status.get('ports')} in {status.get('networks')} networks (at the last change of state)")
    return lines
