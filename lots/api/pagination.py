"""Pagination with bounds, so no page request can ask the database for the impossible."""

from rest_framework.pagination import LimitOffsetPagination

MAX_OFFSET = 10**12


class Pages(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
