"""The session's throwaway PostgreSQL cluster, shared by tests/stores and tests/conformance.

Both test packages import :func:`postgres_url`; pytest then holds one fixture definition per
importing module, so the cluster itself is a reference-counted module singleton: started by
the first user, stopped when the last one's session teardown runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from actorbus.testing._postgres import PostgresCluster, find_postgres_bin

_cluster: PostgresCluster | None = None
_users = 0


def shared_cluster() -> PostgresCluster:
    """Return the running shared cluster (start it on first use)."""
    global _cluster
    if _cluster is None:
        if find_postgres_bin() is None:
            message = (
                "PostgreSQL tests need the postgresql server binaries: apt-get install "
                "postgresql (or set ACTORBUS_TEST_POSTGRES_URL)"
            )
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        cluster = PostgresCluster()
        cluster.start()
        _cluster = cluster
    return _cluster


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL the tests may use (never the machine's own on :5432).

    ``ACTORBUS_TEST_POSTGRES_URL`` if set; otherwise a throwaway cluster on a free loopback
    port, started once for the session. Without the binaries the tests are skipped, except on
    CI (``CI`` set), where they fail.
    """
    global _cluster, _users
    url = os.environ.get("ACTORBUS_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    cluster = shared_cluster()
    _users += 1
    try:
        yield cluster.url
    finally:
        _users -= 1
        if _users == 0:
            cluster.close()
            _cluster = None
