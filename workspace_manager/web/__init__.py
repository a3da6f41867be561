"""The manager's HTTP side on a real web stack: Starlette on uvicorn (docs/web.md).

- `server.py`: uvicorn embedded on the manager's own event loop, behind `guard.py`, which
  gives every connection an absolute deadline for each request head and evicts the
  longest-waiting one when connection slots run out (slowloris, connection floods).
- `app.py`: the one Starlette application: the probes (`/livez`, `/readyz`, `/status`,
  `/metrics`, answered from `http/routes.py`), the JSON API (`/api/`, `http/api.py`), the
  live event stream (`events.py`, `sse.py`) and the pages (`pages.py`, `templates/`,
  `static/`).
- `context.py`: what the web side may read of the manager (`WebContext`).
"""
