#!/bin/bash
# Quick start, command 1: installs what is missing, builds, and runs the main job: `xdt train`
# of gpt-small-cpu on an English text every Debian system has.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
xdt_install_deps
xdt_build build
exec ./build/xdt train --model configs/models/gpt-small-cpu.yaml \
    --data /usr/share/common-licenses/GPL-3 --batch 8 --seq 128 --steps 150 --eval-every 50 \
    --metrics build/quickstart-metrics.jsonl "$@"
