"""The SSH shell into one's own site (AsyncSSH). Not built yet: it comes with its own issue.

What it will call already exists on the API side: `/shell-server/v1/...`, reachable only with the shell
server's URL-scoped credential (api/shell_server.py).
"""
