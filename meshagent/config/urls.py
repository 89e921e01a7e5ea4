"""The ledger URL: its default, its parts read without SQLAlchemy, and its password masked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import platformdirs

URL_HINT = "use sqlite:///path/to/ledger.db or postgresql+psycopg://user@host:5432/dbname"
#: How a SQLite ledger's commits reach the disk: the URL's ``?sync=`` (`meshagent.ledger.engine`).
SQLITE_SYNC_MODES = ("normal", "full")
#: With ``sync=normal``, the longest a SQLite commit waits to be written to the disk.
WAL_SYNC_SECONDS = 0.5


def sync_problem(backend: str, sync: object) -> str | None:
    """What is wrong with a ledger URL's ``sync`` parameter (its value or values), if anything."""
    if sync is None or (backend == "sqlite" and sync in SQLITE_SYNC_MODES):
        return None
    return (
        f"sync={sync!r} is not a setting of it; a SQLite ledger takes ?sync=normal (the default: "
        f"commits reach the disk within {WAL_SYNC_SECONDS:g} s) or ?sync=full (each close waits "
        "for the disk)"
    )


def default_ledger_url() -> str:
    """The SQLite file in the user's data directory, used when no ledger URL is configured."""
    return f"sqlite:///{Path(platformdirs.user_data_dir('meshagent')) / 'ledger.db'}"


def project_ledger_url(settings_file: Path) -> str:
    """The default ledger of a project: beside its meshagent.toml, so that two projects on one
    machine never share a ledger."""
    return f"sqlite:///{settings_file.absolute().parent / '.meshagent' / 'ledger.db'}"


_SECRET_QUERY = re.compile(r"([?&](?:password|passwd|pwd|secret|token)=)[^&]*", re.IGNORECASE)


# scheme[+driver]://[user[:password]@][host][:port][/database][?query], as SQLAlchemy reads a
# URL: read here without SQLAlchemy, whose import costs more than a light command's whole run;
# the engine parses the URL again when the ledger is opened.
_URL = re.compile(
    r"(?P<scheme>[A-Za-z][\w+]*)://"
    r"(?:(?P<user>[^:/@]*)(?::(?P<password>[^@]*))?@)?"
    r"(?P<host>\[[^\]/?]*\]|[^/:?]*)(?::(?P<port>[^/?]*))?"
    r"(?:/(?P<database>[^?]*))?(?:\?(?P<query>.*))?",
    re.DOTALL,
)


class _UrlParts(NamedTuple):
    scheme: str
    backend: str
    password: str | None
    database: str | None
    query: str | None

    def with_database(self, database: str) -> str:
        """The URL of a SQLite database at ``database`` (its query kept as written)."""
        return f"{self.scheme}:///{database}" + (f"?{self.query}" if self.query else "")


def parse_url(value: str) -> _UrlParts | None:
    found = _URL.fullmatch(value) if isinstance(value, str) else None
    if found is None or (found["port"] and not found["port"].isdigit()):
        return None
    backend = found["scheme"].partition("+")[0]
    return _UrlParts(
        found["scheme"], backend, found["password"], found["database"] or None, found["query"]
    )


def mask_url(url: str) -> str:
    """`url` with any password (user:password@, ?password=) replaced by ***, fit for messages.

    The rest of the URL is kept as written, parsable or not.
    """
    # The userinfo pattern is SQLAlchemy's own, so what it would read as a password is masked;
    # the second catches URLs that lost their scheme, such as user:password@host/db.
    url, count = re.subn(r"^([\w+]+://[^:/]*:)[^@]*@", r"\1***@", url)
    if not count and "://" not in url:
        url = re.sub(r"^([^:/@]*:)[^@]*@", r"\1***@", url)
    return _SECRET_QUERY.sub(r"\1***", url)


def has_password(url: str) -> bool:
    parsed = parse_url(url)
    return bool(parsed is not None and parsed.password) or bool(_SECRET_QUERY.search(url))
