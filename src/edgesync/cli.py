"""The ``edgesync`` command line. JSON on stdout, one-line errors on stderr.

Exit codes: 0 ok, 1 not found, 2 bad input or config, 3 refused (policy, or
a change that does not prove its origin), 4 sync failure (peer, network,
deadline, Redis gone mid-session, the output closed), 5 local storage full,
unwritable, damaged, or locked by another process past SQLite's wait.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sqlite3
import sys

from . import __version__, agent, migrations, protocol, reads
from .config import load as load_config
from .db import Database
from .errors import BadInput, EdgesyncError, StorageError, SyncError, one_line
from .lazy import lazy
from .signing import public_text
from .store import Store

# Loaded by push, pull and serve only, with the transports and deadlines of a session.
sync = lazy("edgesync.sync")


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


_opened: list[Store] = []


def open_store(args, outbox: bool = True) -> Store:
    """``outbox=False`` for a command that writes nothing (agent.open_store)."""
    store = agent.open_store(args.config, warn=_warn, outbox=outbox)
    _opened.append(store)
    return store


def _print(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _read_data(raw: str) -> object:
    if raw == "-":
        try:
            raw = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"invalid --data on stdin: not UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadInput("invalid JSON in --data: nested too deep") from None
    except ValueError as exc:  # bad JSON, or an integer of thousands of digits
        raise BadInput(f"invalid JSON in --data: {str(exc)[:200]}") from None


def cmd_init(args) -> int:
    store = open_store(args)
    store.init(new_incarnation=args.new_incarnation)
    _print({"initialised": str(store.config.db_path)})
    return 0


def cmd_pubkey(args) -> int:
    """This node's public signing key, as the trust role and keys files list it."""
    store = open_store(args, outbox=False)
    print(f"{store.config.name} {public_text(store.signer.public)}")
    return 0


def cmd_put(args) -> int:
    data = _read_data(args.data)
    store = open_store(args)
    store.check_schema()
    _print(store.put(args.table, data))
    return 0


def cmd_get(args) -> int:
    store = open_store(args, outbox=False)
    store.check_schema()
    if args.slug is not None:
        if args.id is not None:
            raise BadInput("give either ID or --slug, not both")
        _print(store.get_by_slug(args.table, args.slug))
    elif args.id is None:
        raise BadInput("give ID or --slug SLUG")
    else:
        _print(store.get(args.table, args.id))
    return 0


def cmd_delete(args) -> int:
    store = open_store(args)
    store.check_schema()
    store.delete(args.table, args.id)
    _print({"deleted": args.id, "table": args.table})
    return 0


def cmd_status(args) -> int:
    store = open_store(args)
    store.check_schema()
    status = store.status()
    if args.json:
        _print(status)
    else:
        rows = ", ".join(f"{t}={n}" for t, n in status["rows"].items()) or "no tables"
        print(
            f"{status['node']} ({status['role']}"
            + (f", farm {status['farm']}" if status["farm"] else "")
            + f"): {rows}; outbox pending {status['outbox_pending']}; redis {status['redis']}"
        )
    return 0


def cmd_sync(args) -> int:
    store = open_store(args)
    store.check_schema()
    report = sync.sync(store, args.peer, args.command, dry_run=args.dry_run)
    if args.json:
        _print(report)
    elif args.dry_run:
        n = report.get("would_send", report.get("would_receive", 0))
        verb = "send" if args.command == "push" else "receive"
        print(f"{args.command} {args.peer}: would {verb} {n}")
    else:
        print(
            f"{args.command} {args.peer}: sent {report['sent']}, received {report['received']}, "
            f"applied {report['applied']}, conflicts {report['conflicts']} "
            f"in {report['duration_ms']} ms"
        )
    return 0


def cmd_serve(args) -> int:
    if not args.stdio:
        raise BadInput("serve needs --stdio (the only transport it speaks)")
    store = open_store(args)
    store.check_schema()
    return sync.serve(store, args.peer, sys.stdin.buffer, sys.stdout.buffer)


def _database(args) -> Database:
    """The database alone (no Redis, no schema check): for migrate and backup,
    which must open any schema this release knows."""
    config = load_config(args.config)
    if not config.db_path.is_file():
        raise BadInput(f"database not initialised: run `edgesync init` ({config.db_path})")
    db = Database(config)
    _closing.append(db)
    return db


_closing: list[Database] = []


def cmd_migrate(args) -> int:
    db = _database(args)
    if args.check:
        now = migrations.version_of(db)
        if now is None:
            raise BadInput(f"database not initialised: run `edgesync init` ({db.config.db_path})")
        migrations.known(now, db.config.db_path)
        _print({"schema": now, "release_schema": migrations.SCHEMA, "oldest": migrations.OLDEST})
        return 0
    before, after = migrations.migrate(db, args.to)
    _print({"schema_from": before, "schema": after, "migrated": before != after})
    return 0


def cmd_backup(args) -> int:
    db = _database(args)
    if args.keep is not None and args.keep < 1:
        raise BadInput(f"--keep {args.keep}: keep at least 1 backup")
    report = db.backup(args.path)
    if args.keep is not None:
        report["pruned"] = db.prune_backups(args.keep)
    _print(report)
    return 0


def cmd_check_backup(args) -> int:
    """Needs no config: it runs where a copy arrived (the controller too)."""
    _print(Database.check_backup(args.path, args.name))
    return 0


def cmd_digest(args) -> int:
    """The digest as one hex line; with --json also per table; with --table, the
    buckets (or records) of one table under --prefix, for narrowing a difference."""
    if args.table is None:
        if args.prefix is not None:
            raise BadInput("--prefix needs --table")
    else:
        reads.check_prefix(args.prefix or "")
        if not args.json:
            raise BadInput("--table answers in JSON only: add --json")
    store = open_store(args, outbox=False)
    store.check_schema()
    if args.table is not None:
        spec = reads.spec_of(store.config, args.table)
        _print(reads.buckets(store.db, spec, args.prefix or ""))
    elif args.json:
        _print(reads.digest_tables(store.db, store.config))
    else:
        print(store.digest())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgesync", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="config file (default: $EDGESYNC_CONFIG)")
    p.add_argument(
        "--version",
        action="version",
        version=f"edgesync {__version__} (schema {migrations.SCHEMA}, migrates from "
        f"{migrations.OLDEST}; sync protocol {protocol.OLDEST}-{protocol.VERSION})",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "init", help="create the database, schema and signing key (harmless to repeat)"
    )
    s.add_argument("--new-incarnation", action="store_true",
                   help="a host made anew under a name the fleet knew: if this makes the "
                        "signing key, start as a new incarnation of the name")  # fmt: skip
    s.set_defaults(fn=cmd_init)

    s = sub.add_parser("pubkey", help="print this node's public signing key: NAME KEY")
    s.set_defaults(fn=cmd_pubkey)

    s = sub.add_parser("put", help="store a new record, or update one given its id")
    s.add_argument("table")
    s.add_argument("--data", required=True, help="a JSON object, or - to read it from stdin")
    s.set_defaults(fn=cmd_put)

    s = sub.add_parser("get", help="print a record by ID or by slug")
    s.add_argument("table")
    s.add_argument("id", nargs="?")
    s.add_argument("--slug")
    s.set_defaults(fn=cmd_get)

    s = sub.add_parser("delete", help="delete a record (a tombstone that syncs)")
    s.add_argument("table")
    s.add_argument("id")
    s.set_defaults(fn=cmd_delete)

    s = sub.add_parser("status", help="node, rows, outbox and redis state")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_status)

    for action, text in (
        ("push", "send this node's changes the peer does not hold"),
        ("pull", "fetch the peer's changes this node does not hold"),
    ):
        s = sub.add_parser(action, help=text)
        s.add_argument("peer")
        s.add_argument("--json", action="store_true")
        s.add_argument("--dry-run", action="store_true", help="count what would move; move nothing")
        s.set_defaults(fn=cmd_sync)

    s = sub.add_parser("serve", help="the receiving side of a sync session, on stdin/stdout")
    s.add_argument("--stdio", action="store_true")
    s.add_argument("--peer", required=True, help="who is calling (set by the SSH forced command)")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser(
        "migrate", help="move the database's schema to this release's (or --to N), in one step"
    )
    s.add_argument("--to", type=int, default=migrations.SCHEMA, metavar="N",
                   help=f"the schema version to move to ({migrations.OLDEST}-{migrations.SCHEMA};"
                        " lower ones for a rollback)")  # fmt: skip
    s.add_argument(
        "--check", action="store_true", help="print the database's schema version, change nothing"
    )
    s.set_defaults(fn=cmd_migrate)

    s = sub.add_parser("backup", help="a consistent copy of the database, taken while it runs")
    s.add_argument("path", nargs="?", help="where (default: DATA_DIR/backups/<schema>-<time>.db)")
    s.add_argument("--keep", type=int, metavar="N",
                   help="then remove all but the N newest backups in DATA_DIR/backups")  # fmt: skip
    s.set_defaults(fn=cmd_backup)

    s = sub.add_parser("check-backup", help="check a backup's copy: PRAGMA integrity_check, "
                       "an edgesync database (read-only; no config needed)")  # fmt: skip
    s.add_argument("path")
    s.add_argument("--name", help="refuse a copy of any node but this one")
    s.set_defaults(fn=cmd_check_backup)

    s = sub.add_parser("digest", help="a digest of the visible content, equal on synced nodes")
    s.add_argument("--json", action="store_true", help="the total and each table's digest and rows")
    s.add_argument("--table", help="the rows of this table under --prefix, in buckets or records")
    s.add_argument(
        "--prefix", help="lowercase hex: rows whose sha256(id) starts with it (default '')"
    )
    s.set_defaults(fn=cmd_digest)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed a one-line usage error
        return int(exc.code or 0)
    try:
        try:
            return args.fn(args)
        finally:
            while _opened:  # queue what was written on Redis before exiting
                _opened.pop().close()
            while _closing:
                _closing.pop().close()
    except EdgesyncError as exc:
        return _fail(exc)
    except BrokenPipeError:  # whoever read our output went away
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _fail(SyncError("output closed before it was all written (broken pipe)"))
    except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
        storage = _storage_error(exc)
        if storage is None:
            raise
        return _fail(storage)
    except KeyboardInterrupt:
        return 130


# Environmental faults of the local disk: each is exit 5, never a traceback.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES,
                   errno.EEXIST, errno.ENOTDIR, errno.EISDIR}  # fmt: skip


def _storage_error(exc: Exception) -> StorageError | None:
    """The one-line error for a fault of local storage (SQLite's or the OS's), if
    ``exc`` is one; the open transaction was rolled back, nothing was written."""
    if isinstance(exc, sqlite3.Error) and type(exc) in (
        sqlite3.OperationalError, sqlite3.DatabaseError
    ):  # fmt: skip
        return StorageError(f"local storage: {exc}")
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        where = f" ({exc.filename})" if exc.filename else ""
        return StorageError(f"local storage: {exc.strerror}{where}")
    return None


def _fail(exc: EdgesyncError) -> int:
    msg = one_line(str(exc))  # one line whatever the input held
    _warn(msg if msg.startswith("refused:") else f"edgesync: {msg}")
    return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
