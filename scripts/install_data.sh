#!/usr/bin/env bash
# Installs Debian's Fashion-MNIST package where apt is available; otherwise supernas falls back
# to torchvision's download on first use (and says so).
set -u
if dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "supernas: not root and no sudo; skipping apt (torchvision will download Fashion-MNIST)"
      exit 0
    fi
  fi
  if $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
     || { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }; then
    echo "supernas: installed Debian's dataset-fashion-mnist"
  else
    echo "supernas: apt could not install dataset-fashion-mnist; torchvision will download it"
  fi
else
  echo "supernas: no apt here; torchvision will download Fashion-MNIST on first use"
fi
