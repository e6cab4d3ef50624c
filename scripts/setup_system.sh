#!/usr/bin/env bash
# Install the Debian packages the project needs, if missing. Idempotent and quick when
# everything is present: wordnet-base (WordNet 3.0 data files), a Java runtime for Spark,
# and chromium (the headless browser the HTML report is tested in).
set -euo pipefail
need=()
dpkg -s wordnet-base >/dev/null 2>&1 || need+=(wordnet-base)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
