#!/usr/bin/env bash
# Regenerate sparkplug_b_pb2.py and its type stub sparkplug_b_pb2.pyi from sparkplug_b.proto.
#
# sparkplug_b.proto is the Sparkplug B payload definition of Eclipse Tahu, copied unchanged from
# https://github.com/eclipse/tahu, sparkplug_b/sparkplug_b.proto (commit 46f25e79f342, the
# file's last change as of the copy). The generated module needs a protobuf runtime of the same
# major version as the protoc that made it, at least as new (pyproject.toml pins the range).
#
#   .venv/bin/pip install grpcio-tools   # protoc as a Python module; not a dependency of pkgline
#   pkgline/sparkplug/generate.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-../../.venv/bin/python}"
"$PYTHON" -m grpc_tools.protoc --version
"$PYTHON" -m grpc_tools.protoc --proto_path=. --python_out=. --pyi_out=. sparkplug_b.proto
