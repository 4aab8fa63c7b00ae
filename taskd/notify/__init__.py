"""Notifications and alerts: queued in the store with the change that caused them, then sent."""
