"""The webhook publisher's child process: `python -m lots.webhook_publisher`, started by a
worker that runs watchers (lots.services.webhooks._PublisherProcess). It reads one line of
endpoint ids per event on its standard input and queues their delivery runs, at a lower
CPU priority than its parent's; it exits at the end of its input (its parent stopped or
died)."""

import os
import sys

PUBLISHER_NICE = 5  # below the watchers, whose pushes to the boards come first


def main() -> None:
    os.nice(PUBLISHER_NICE)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parkweb.settings")
    import django

    django.setup()
    from lots.services.webhooks import publish_stdin_lines

    publish_stdin_lines(sys.stdin.buffer)


if __name__ == "__main__":
    main()
