#!/usr/bin/env bash
# Generates a throwaway CA and a server certificate for 127.0.0.1 / localhost (test use only).
#
# Usage: scripts/gen-test-certs.sh DIR
# Writes DIR/ca.pem (the CA certificate to trust), DIR/ca.key, DIR/server.pem (leaf then CA)
# and DIR/server.key. Overwrites existing files. Needs the openssl CLI.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
command -v openssl >/dev/null || { echo "gen-test-certs: openssl not found (apt-get install -y openssl)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"

# openssl chatters on stderr; show its output only when it fails.
quiet() {
    local out
    out=$("$@" 2>&1) || { echo "$out" >&2; return 1; }
}

quiet openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
    -keyout ca.key -out ca.pem -subj "/CN=clearflow test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"

quiet openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
    -subj "/CN=localhost"

cat > server.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
quiet openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 30 -sha256 -extfile server.ext -out server.leaf.pem
cat server.leaf.pem ca.pem > server.pem
rm -f server.csr server.ext server.leaf.pem ca.srl
chmod 600 ca.key server.key
