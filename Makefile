# The two commands of the README. Both set everything up first (idempotent, see scripts/setup.sh).
.PHONY: demo test up bench

demo:  ## set up, start Palaver on its embedded defaults, run the demo meeting, stop
	scripts/setup.sh
	.venv/bin/palaver demo

test:  ## set up, then run the whole test suite (unit + integration on the real broker, chdb, Whisper)
	scripts/setup.sh --test
	.venv/bin/python -m pytest -q

up:  ## set up, then run Palaver until Ctrl-C
	scripts/setup.sh
	.venv/bin/palaver up
