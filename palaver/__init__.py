"""Palaver's shared kernel: event contracts, Kafka plumbing, the ClickHouse store, settings, metrics.

Services (ingest, stt_workers, merger, api, enrichment) import this package and never each other; this
package imports none of them. The composition root that wires services into processes is ``stack``.
"""

import os

# Before numpy loads (``stack``, the entry point of every Palaver process, imports this first): OpenBLAS's own
# thread pool would run beside the threads the settings budget (the STT worker's decode lanes), and its
# threads busy-wait after each small matrix product (a mel spectrogram). Measured in the STT worker at 12
# speakers on 2 cores: about 10 points of a core less CPU with one BLAS thread (bench/README.md).
# An explicit OPENBLAS_NUM_THREADS in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
