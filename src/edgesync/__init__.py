"""edgesync: SQLite data on edge servers, kept in sync with a master."""

__version__ = "0.4.0"
