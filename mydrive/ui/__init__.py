"""The browser UI of one peer (Flask): onboarding, login, rotation, file tree, upload, basket.

``mydrive.ui.app.create_app(peer_dir)`` builds the WSGI app; ``mydrive serve ui PEER_DIR``
runs it on loopback under gunicorn or waitress (``mydrive.ui.serve``). A logged-in user's
keys live in this one process's memory (``mydrive.ui.sessions``), never in a cookie or on disk
(docs/ui.md). This package's __init__ imports nothing.
"""
