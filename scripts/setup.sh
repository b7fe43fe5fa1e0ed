#!/usr/bin/env bash
# Sets up everything Palaver needs on this machine, idempotently:
#   a Python 3.11 virtual environment in .venv with Palaver installed (editable, with test extras),
#   and the Kafka broker jars in ~/.cache/palaver/kafka (fetched once from Maven Central with mvn).
# Needs: Python 3.11, Java 17+, Maven. `scripts/setup.sh --test` also checks the test tools (kcat, chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "setup: $*" >&2; exit 1; }

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11"
command -v java >/dev/null || die "Java 17+ is required for the embedded Kafka broker (Debian: apt-get install openjdk-17-jre-headless)"
command -v mvn >/dev/null || die "Maven is required once, to fetch the Kafka jars (Debian: apt-get install maven)"

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "setup: installing Python dependencies into .venv"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"

echo "setup: fetching the Kafka broker jars (cached after the first time)"
.venv/bin/palaver broker fetch

if [ "${1:-}" = "--test" ]; then
  command -v kcat >/dev/null || die "the tests read topics with kcat (Debian: apt-get install kcat)"
  command -v chromium >/dev/null || die "the web app's browser tests drive Debian's chromium (apt-get install chromium)"
fi
echo "setup: done"
