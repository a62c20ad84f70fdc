#!/usr/bin/env bash
# Makes a self-signed certificate for Envoy's HTTPS listener, once.
set -euo pipefail
dir="${1:?usage: make-cert.sh DIR}"
if [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ]; then exit 0; fi
mkdir -p "$dir"
echo "==> making a self-signed certificate for localhost in $dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
chmod 600 "$dir/key.pem"
