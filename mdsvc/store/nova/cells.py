# -*- test-case-name: tests.test_nova_store -*-
"""
Which database holds an instance, as Nova's metadata API finds it
(C{nova.api.metadata.base.get_metadata_by_instance_id}):

  - C{[api] local_metadata_per_cell = True}: C{[database] connection}, always;
  - otherwise the instance's row of C{instance_mappings} in the API database, joined to its
    C{cell_mappings} row, names the cell; a cell mapping's C{database_connection} may be a
    template whose C{{placeholders}} come from C{[database] connection}
    (C{CellMapping.format_db_url});
  - no instance mapping: Nova warns C{Instance mapping for <uuid> not found; cell setup is
    incomplete} and reads C{[database] connection}; so does an instance mapped to no cell yet.
"""

from __future__ import annotations

from urllib.parse import urlparse

from attrs import frozen
from sqlalchemy import select
from sqlalchemy.engine import Connection

from mdsvc.store.nova.tables import cell_mappings, instance_mappings


@frozen
class Placement:
    """
    Where an instance's rows are.

    @ivar url: the cell database's URL, or None for C{[database] connection}.
    @ivar mapped: whether the API database has a mapping for the instance.
    """

    url: str | None
    mapped: bool


def find_cell(conn: Connection, uuid: str) -> Placement:
    """The cell of C{uuid} by the API database (read on C{conn})."""
    query = (
        select(instance_mappings.c.cell_id, cell_mappings.c.database_connection)
        .select_from(instance_mappings.outerjoin(cell_mappings, instance_mappings.c.cell_id == cell_mappings.c.id))
        .where(instance_mappings.c.instance_uuid == uuid)
        .order_by(instance_mappings.c.id)
        .limit(1)
    )
    row = conn.execute(query).first()
    if row is None:
        return Placement(None, False)
    return Placement(row.database_connection or None, True)


def _parse_netloc(netloc: str) -> dict[str, object]:
    """C{user:pass@host:port} as the placeholders of one host of a multi-host URL."""
    userpass, _, hostport = netloc.rpartition("@")
    parsed = urlparse("//" + hostport)
    username, _, password = userpass.partition(":")
    return {"username": username, "password": password if ":" in userpass else None, "hostname": parsed.hostname,
            "port": parsed.port}


def format_db_url(url: str, default: str | None) -> str:
    """
    A cell mapping's C{database_connection} with its C{{placeholders}} filled from C{default}
    (C{[database] connection}) as Nova's C{CellMapping.format_db_url} does: C{{scheme}},
    C{{username}}, C{{password}}, C{{hostname}}, C{{port}}, C{{path}}, C{{query}},
    C{{fragment}}, and C{{usernameN}} etc. for each host of a comma-separated netloc.  Without a
    default, or when formatting fails, the URL is used as written.
    """
    if default is None or "{" not in url:
        return url
    try:
        base = urlparse(default)
        subs: dict[str, object] = {
            "username": base.username, "password": base.password, "hostname": base.hostname, "port": base.port,
            "scheme": base.scheme, "query": base.query, "fragment": base.fragment, "path": base.path.lstrip("/"),
        }
        if "," in base.netloc:
            for index, netloc in enumerate(base.netloc.split(","), 1):
                for key, value in _parse_netloc(netloc).items():
                    subs[f"{key}{index}"] = value
        return url.format(**subs)
    except (KeyError, IndexError, ValueError):
        return url
