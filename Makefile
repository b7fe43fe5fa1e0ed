# The commands of the README. demo, test and up set everything up first (idempotent, see scripts/setup.sh);
# test-unit only when there is no .venv yet, so that it stays fast.
.PHONY: demo test test-unit up bench

demo:  ## set up, start Palaver on its embedded defaults, run the demo meeting, then serve the web app until Ctrl-C
	scripts/setup.sh
	.venv/bin/palaver demo --serve

test:  ## set up, then run the whole test suite (unit + integration on the real broker, chdb, Whisper)
	scripts/setup.sh --test
	.venv/bin/python -m pytest -q

test-unit:  ## the fast tests only: unit tests, no broker, no ClickHouse, no Whisper model (seconds)
	test -x .venv/bin/python || scripts/setup.sh
	.venv/bin/python -m pytest -q -m "not integration"

up:  ## set up, then run Palaver until Ctrl-C
	scripts/setup.sh
	.venv/bin/palaver up
