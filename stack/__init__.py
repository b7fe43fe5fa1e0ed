"""The composition root: the ``palaver`` command, the process supervisor, the HTTP composition and the
wiring of services into processes. The one package that imports the services; nothing imports it.

``python -m stack`` is how the supervisor starts its children.
"""

import palaver  # noqa: F401  # first: it fixes OpenBLAS's threads before numpy loads
