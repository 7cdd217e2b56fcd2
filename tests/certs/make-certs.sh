#!/bin/sh
# Regenerates the TEST-ONLY certificates in this directory with openssl.
# The build and the tests never run this; the generated PEM files are
# committed.  Private keys are committed on purpose: nothing here protects
# anything.  Run from this directory: sh make-certs.sh
#
# Validity is fixed, 2000-01-01 to 2125-12-31, so the files work whatever
# the date on the machine running the tests.
set -eu
start=20000101000000Z
end=21251231235959Z
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign CSR CA-NAME EXTENSIONS OUT: signs with `openssl ca` (which takes fixed dates).
sign() {
    mkdir -p "$tmp/db"
    : > "$tmp/db/index"
    printf '%s\n' "$3" > "$tmp/ext"
    cat > "$tmp/ca.cnf" <<CNF
[ca]
default_ca = test
[test]
database = $tmp/db/index
new_certs_dir = $tmp/db
rand_serial = yes
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
organizationName = optional
commonName = supplied
CNF
    if [ "$2" = self ]; then
        openssl ca -batch -notext -config "$tmp/ca.cnf" -selfsign -keyfile "$tmp/self.key" \
            -startdate $start -enddate $end -extfile "$tmp/ext" -in "$1" -out "$4" 2>/dev/null
    else
        openssl ca -batch -notext -config "$tmp/ca.cnf" -cert "$tmp/$2.crt" -keyfile "$tmp/$2.key" \
            -startdate $start -enddate $end -extfile "$tmp/ext" -in "$1" -out "$4" 2>/dev/null
    fi
}

# Test CA and a second, untrusted CA.
for ca in ca rogue-ca; do
    key "$tmp/$ca.key"
    cp "$tmp/$ca.key" "$tmp/self.key"
    openssl req -new -key "$tmp/$ca.key" -subj "/O=libonlinetrain tests/CN=$ca (test only)" \
        -out "$tmp/$ca.csr"
    sign "$tmp/$ca.csr" self "basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash" "$tmp/$ca.crt"
done

# leaf NAME CA EXTENSIONS CN: NAME.pem = certificate for CN signed by CA, then its key.
leaf() {
    key "$tmp/$1.key"
    openssl req -new -key "$tmp/$1.key" -subj "/O=libonlinetrain tests/CN=$4" -out "$tmp/$1.csr"
    sign "$tmp/$1.csr" "$2" "$3" "$tmp/$1.crt"
    cat "$tmp/$1.crt" "$tmp/$1.key" > "$1.pem"
}

leaf server ca "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1" localhost
leaf client ca "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth" test-client
leaf rogue-client rogue-ca "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth" rogue-client

cp "$tmp/ca.crt" ca.pem
