"""Monitoring: drift, and later accuracy and analytics."""
