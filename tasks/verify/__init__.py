"""`inv verify`: functional checks of the running stack, the user's path across services.

Container health says a process answers its healthcheck; these checks say the stack does its
job: LiteLLM serves the model and a completion comes back from vLLM, Open WebUI's admin signs
in and sees the model, each consumer reaches its own database, the object store and vector
store take a write, Prometheus's targets are up, vLLM runs on the planned cards.

* `registry`: every check is declared with the services it tests (``@check("litellm", ...)``),
  in `checks/<area>.py`; it runs only where all of them run, and is skipped otherwise.
* `probe`: how a check reaches a service. Everything goes through an Invoke context's
  ``c.run``, so a Fabric `Connection` runs the same checks on a remote host against its own
  stack. HTTP goes to the service's published loopback port (every service the checks reach
  publishes one, on the address `inv status` shows), sent by a small fixed Python program on the
  host whose request, headers and keys included, arrives on its standard input; PostgreSQL
  and Redis are reached with their own image's client (psql, redis-cli) through
  ``docker exec -i``, the password on standard input. No secret is ever in an argument.
* `target`: what is being verified (environment, running services, ports, secrets, plan).
* `runner`: runs the checks, times them, and reports ok / failed (expected, got, fix) / skipped.
"""
