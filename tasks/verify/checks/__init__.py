"""The checks, one module per area; importing this package registers them all.

Adding a service means adding its check here, in the module of its area, with
``@check("<service>", ...)`` (see `..registry`).
"""

from . import datastores, gpu, llm, observability, ui

__all__ = ["datastores", "gpu", "llm", "observability", "ui"]
