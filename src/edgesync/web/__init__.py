"""The HTTP face of a node: its store served to users, resident, one process per host.

    settings.py  the HTTP settings file (listen address, tokens, public tables, limits)
    tokens.py    bearer tokens (kept as hashes), signed session cookies, CSRF tokens
    http.py      requests, responses and errors as this package speaks them
    backend.py   the store behind it: read-only reads, the one writer, bookmarks
    metrics.py   Prometheus metrics
    api.py       the JSON API under /v1
    editor.py    the content editor under /admin/content-editor (Jinja2 templates)
    app.py       the ASGI application: the routing table and the layers around it
    server.py    ``edgesync http``: the application on granian

The package stands above the store: the store and the sync code never import it.
"""
