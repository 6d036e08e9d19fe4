#!/bin/bash
# Quick start, command 1: installs what is missing, builds, and runs the main job, `xdt demo`:
# gpt-small-cpu planned, predicted and trained across two emulated datacenters on this host, on
# an English text every Debian system has; the results land in xdt-demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
xdt_install_deps
xdt_build build
exec ./build/xdt demo --out xdt-demo "$@"
