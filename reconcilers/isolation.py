"""What confines a site's processes, the same in its service's tasks and in its terminal sessions' containers.

No capability at all and no new privileges (see reconcilers/launcher.py for how a service gets the latter);
at most `spec.resources.pids` processes; open files bounded; no core dumps (the host's core_pattern may
hand them to a program running as root); logs bounded in size and count, so a chatty site cannot fill the
node's disk. Memory comes from the site's spec; a terminal container gets no swap beyond it, while a Swarm
service cannot say so (its API has no swap field), which the README states.
"""

from __future__ import annotations

from typing import Any

DROPPED_CAPABILITIES = ["ALL"]
# The edge runs no site's code, but it is the one container every visitor reaches: it keeps only what an
# Nginx master needs to drop to www-data (SETUID, SETGID), signal its workers (KILL), make and own its cache
# directories (CHOWN, DAC_OVERRIDE) and listen on port 80 (NET_BIND_SERVICE). Gone, among the rest: raw
# sockets (NET_RAW: forging packets on the sites' network), mknod, chroot and file capabilities.
EDGE_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID"]
# Per process; the kernel's own table is shared by every site, so each gets a bounded share of it.
OPEN_FILES = 4096
# docker-py's and the Swarm API's spelling of the same limits.
ULIMITS: list[dict[str, Any]] = [
    {"Name": "nofile", "Soft": OPEN_FILES, "Hard": OPEN_FILES},
    {"Name": "core", "Soft": 0, "Hard": 0},
]
# json-file keeps `docker service logs` working (Director's log view reads it); at most 2 x 10 MB a container.
SITE_LOG_DRIVER: dict[str, Any] = {"Name": "json-file", "Options": {"max-size": "10m", "max-file": "2"}}
# The edge logs every request: more room, bounded all the same.
EDGE_LOG_DRIVER: dict[str, Any] = {"Name": "json-file", "Options": {"max-size": "50m", "max-file": "4"}}
