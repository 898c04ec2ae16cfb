"""Web adapters: JSON API controllers (api/) and dashboard pages (pages/). Thin: they call the services."""
