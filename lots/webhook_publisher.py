"""The webhook publisher's child process: `python -m lots.webhook_publisher`, started by a
worker that runs watchers (lots.services.webhooks._PublisherProcess). It reads one line of
endpoint ids per event on its standard input and queues their delivery runs under Linux's
idle CPU policy, as the delivery workers run (deploy/systemd/parkweb-webhooks.service):
the watchers' pushes to the boards come first. It exits at the end of its input (its
parent stopped or died)."""

import os
import sys

from parkweb.cpu import yield_cpu


def main() -> None:
    # Only CPU that no other process wants (it leads a session of its own: its group's
    # weight too). Should it get none for long, its small pipe fills and its parent
    # publishes from a thread instead (_PublisherProcess.put).
    yield_cpu()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")
    import django

    django.setup()
    from lots.services.webhooks import publish_stdin_lines

    publish_stdin_lines(sys.stdin.buffer)


if __name__ == "__main__":
    main()
