#!/usr/bin/env bash
# Runs the main job on the embedded default: the daemon on ./spool with its
# SQLite store, the demo senders registered, and the fixture files dropped in.
# Responses appear in spool/outbound/<sender>/, one journal line per batch in
# spool/journal/. Ctrl-C stops the daemon cleanly.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --quiet
ecertd=target/release/ecertd
root=${ECERTD_ROOT:-spool}
export ECERTD_ROOT=$root
# The fixtures are dated for this business date; override to see expiry rules at work.
export ECERTD_BUSINESS_DATE=${ECERTD_BUSINESS_DATE:-2026-03-15}

$ecertd init
add() { # registering twice is harmless: keep the existing sender
  $ecertd sender add "$@" 2>/dev/null || true
}
add --id AU1 --kind country --country AU --password PWAU01
add --id NZ1 --kind country --country NZ --password PWNZ01
add --id MX1 --kind country --country MX --password PWMX01
add --id ABC --kind broker --filer ABC --password PWABC1
add --id DEF --kind broker --filer DEF --password PWDEF1

# Drop the files as a sender would: under a dot-name, then renamed into place.
# Certificates first, so that the entry summaries find them.
drop() { # drop FILE CHANNEL
  local name
  name=$(basename "$1")
  cp "$1" "$root/inbound/$2/.$name"
  mv "$root/inbound/$2/.$name" "$root/inbound/$2/$name"
}
for f in gt-au gt-nz gt-mx; do drop "fixtures/valid/$f.txt" ecert; done
(
  # Claims and queries follow once the certificates are on file.
  sleep 2
  drop fixtures/valid/ae-claims.txt abi
  sleep 2
  drop fixtures/valid/ec-query.txt abi
  drop fixtures/valid/gq-query.txt ecert
) &
echo "ecertd: serving $root (TCP 127.0.0.1:4100, metrics http://127.0.0.1:9100/metrics); Ctrl-C to stop"
exec $ecertd serve --listen 127.0.0.1:4100 --metrics 127.0.0.1:9100
