"""Login for the dashboard and the REST API: people (argon2id passwords), sessions, API tokens, the one-time
setup token, login rate limits. Services and storage only — HTTP (cookies, CSRF headers) lives in web/."""
