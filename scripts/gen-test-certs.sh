#!/usr/bin/env bash
# Generates throw-away certificates for the TLS tests into DIR (nothing
# secret is committed; every test run makes its own):
#   ca.pem/ca.key            the test CA
#   server.pem/server.key    localhost + 127.0.0.1 + ::1, signed by the CA
#   expired.pem/.key         same names, validity ended in 2020
#   wronghost.pem/.key       for other.example only
#   self.pem/self.key        self-signed localhost
#   other-ca.pem, otherca-server.pem/.key  a second CA and a localhost cert it signed
#   client.pem/client.key    a client certificate signed by the CA (mTLS)
set -euo pipefail
dir=${1:?usage: gen-test-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
q() { "$@" >/dev/null 2>&1 || { echo "gen-test-certs: failed: $*" >&2; "$@"; exit 1; }; }

key() { q openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

ca() { # name cn
  key "$1.key"
  q openssl req -x509 -new -key "$1.key" -sha256 -days 30 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.pem"
}

# leaf name cn san ca [start end]: with start/end, `openssl ca` sets the dates.
leaf() {
  local name=$1 cn=$2 san=$3 issuer=$4 start=${5:-} end=${6:-}
  key "$name.key"
  q openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$name.ext"
  if [ -z "$start" ]; then
    q openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -CAcreateserial \
      -days 30 -sha256 -extfile "$name.ext" -out "$name.pem"
  else
    mkdir -p ca-db && : >ca-db/index.txt && echo 01 >ca-db/serial
    cat >ca-db/ca.cnf <<CNF
[ca]
default_ca = test
[test]
dir = ca-db
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
CNF
    q openssl ca -batch -config ca-db/ca.cnf -cert "$issuer.pem" -keyfile "$issuer.key" -in "$name.csr" \
      -startdate "$start" -enddate "$end" -extfile "$name.ext" -out "$name.pem" -notext
  fi
  rm -f "$name.csr" "$name.ext"
}

ca ca "lunet test CA"
ca other-ca "another test CA"
leaf server localhost "DNS:localhost,IP:127.0.0.1,IP:::1" ca
leaf expired localhost "DNS:localhost,IP:127.0.0.1" ca 20200101000000Z 20200201000000Z
leaf wronghost other.example "DNS:other.example" ca
leaf otherca-server localhost "DNS:localhost,IP:127.0.0.1" other-ca
leaf client "lunet test client" "DNS:client.test" ca
key self.key
q openssl req -x509 -new -key self.key -sha256 -days 30 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out self.pem
rm -rf ca-db ./*.srl
