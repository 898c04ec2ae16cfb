"""The dashboard's pages and their htmx fragments (Jinja2 templates in dashboard/templates)."""
