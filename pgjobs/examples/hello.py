"""The smallest pgjobs application: ``pgjobs worker --app pgjobs.examples.hello``.

::

    pgjobs enqueue hello '{"name": "pgjobs"}'
    pgjobs worker --app pgjobs.examples.hello --burst
    pgjobs jobs ls
"""

from __future__ import annotations

import pgjobs

app = pgjobs.App()


@app.task(name="hello")
def hello(name: str = "world") -> str:
    """Greet someone, reporting progress on the way."""
    pgjobs.current_job().set_progress(50, f"greeting {name}")
    return f"Hello, {name}!"
