"""Observability: metrics, and the middleware that feeds them."""
