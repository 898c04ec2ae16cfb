"""Keeping a master for years: backups (backup.py, sealed.py) and the health check (doctor.py).

Layer: between the master's assembly and its adapters' parts: the master runs the daily backup, the CLI runs
backup, restore and doctor locally (they need the database and the data directory, not the REST API). Nothing
here imports click or litestar.
"""
