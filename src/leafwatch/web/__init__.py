"""The built-in dashboard's page, script and styles (package data served by api/dashboard.py)."""
