"""The dashboard at ``/ui``: server-rendered pages, a little vanilla JavaScript.

The pages hold no project data: the script reads everything from ``/v1`` with the API key
the user pasted, kept in ``sessionStorage`` (never a cookie, never a URL), so the dashboard
sees exactly what that key may see and nothing else.
"""

from api.dashboard.routes import mount

__all__ = ["mount"]
