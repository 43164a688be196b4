"""Logs an operator can search: with PARKWEB_LOG_FORMAT=json, one JSON object per line.

Deploys and watchers log their facts as fields (`extra=`): server, tenants, deployment,
outcome, watcher, state. Text logs carry the same facts in the message itself.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# The fields parkweb's own log lines carry beside their message.
FIELDS = (
    "server",
    "tenants",
    "deployment",
    "outcome",
    "worker",
    "watcher",
    "state",
    "request_id",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
