#!/usr/bin/env bash
# A throwaway test CA and a server certificate it signs, for running the client tests over TLS:
#   .ci/tls-test-ca.sh DIR  →  DIR/ca.pem (trust this), DIR/cert.pem + DIR/key.pem (the server's)
# The server certificate names localhost and 127.0.0.1; both expire in 2 days. openssl CLI only.
set -euo pipefail
dir=${1:?usage: tls-test-ca.sh DIR}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout ca.key -out ca.pem -subj "/CN=roomcast CI test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout key.pem -out server.csr -subj "/CN=localhost" 2>/dev/null
cat >server.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile server.ext -out cert.pem 2>/dev/null
rm -f server.csr server.ext ca.srl
echo "test CA: $dir/ca.pem; server certificate: $dir/cert.pem, key: $dir/key.pem"
