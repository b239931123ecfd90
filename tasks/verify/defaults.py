"""The ``mmstack.verify.*`` settings and their defaults (argument > config > these)."""

DEFAULTS = {
    "after_start": True,    # `inv start-*` and `inv deploy` verify at their end (--no-verify: not)
    "timeout": 30,          # seconds per request a check makes
    "log_indices": None,    # Elasticsearch index patterns holding the stack's logs (None: logs-*,logstash-*)
}
