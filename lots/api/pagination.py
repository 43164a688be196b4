"""Pagination with bounds, so no page request can ask the database for the impossible."""

from rest_framework.pagination import CursorPagination, LimitOffsetPagination

MAX_OFFSET = 10**12


class Pages(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)


class KeysetPages(CursorPagination):
    """Keyset pages (`?limit=`, then follow `next`): each `next` link carries where its
    page ended, so a page costs what the first does however deep, and nothing counts
    the whole list."""

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500


class LotPages(KeysetPages):
    """A tenant's lots by slug."""

    ordering = "slug"


class LogPages(KeysetPages):
    """A log that grows while it is read (the webhook deliveries), newest first: rows
    that arrive meanwhile shift nothing (an offset would repeat them on the next page)."""

    ordering = ("-occurred_at", "-pk")
