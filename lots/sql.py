"""Hand-written SQL for the few queries parkweb asks at every parking event or delivery.

Compiling a queryset costs Django about a millisecond, more than asking PostgreSQL the
query; the watcher and the delivery workers ask a few of them for every event. Their SQL
is written once from the models' own tables and columns (`columns`, `table`), and their
rows are loaded through Django's own converters (`load`), as a queryset would load them.
Everything else stays with the ORM.
"""

from __future__ import annotations

import weakref

from django.db import connection, connections


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def columns(model) -> dict[str, str]:
    """Every column of the model, quoted, by field name, in the order `load` reads them."""
    quote = connection.ops.quote_name
    return {field.name: quote(field.column) for field in model._meta.concrete_fields}


def marks(count: int) -> str:
    """`count` parameter placeholders, for an IN list."""
    return ", ".join(["%s"] * count)


class _Loader:
    """One model's instances from its columns, each through the converters Django's own
    compiler would apply (per database connection: they may be bound to it)."""

    def __init__(self, model, wrapper):
        self.model = model
        self.fields = model._meta.concrete_fields
        self.names = [field.attname for field in self.fields]
        self.converters = []
        for field in self.fields:
            column = field.get_col(model._meta.db_table)
            found = wrapper.ops.get_db_converters(column) + field.get_db_converters(wrapper)
            self.converters.append([(converter, column) for converter in found])

    def __call__(self, values, wrapper):
        values = list(values)
        for n, converters in enumerate(self.converters):
            for converter, column in converters:
                values[n] = converter(values[n], column, wrapper)
        return self.model.from_db(wrapper.alias, self.names, values)


_loaders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def load(model, values):
    """An instance of `model` from a row's slice of its columns (as `columns` orders
    them), on the default database."""
    wrapper = connections["default"]
    mine = _loaders.setdefault(wrapper, {})
    if model not in mine:
        mine[model] = _Loader(model, wrapper)
    return mine[model](values, wrapper)


def width(model) -> int:
    return len(model._meta.concrete_fields)
