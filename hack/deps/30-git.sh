#!/usr/bin/env bash
# Debian's git: the real server (git http-backend, git daemon, receive-pack)
# the git backend's tests push to. Installed only if missing.
set -euo pipefail
if command -v git >/dev/null && [ -x "$(git --exec-path)/git-http-backend" ] && [ -x "$(git --exec-path)/git-daemon" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "git (with git-daemon and git-http-backend) is missing; install Debian's git package" >&2
  exit 1
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y git
