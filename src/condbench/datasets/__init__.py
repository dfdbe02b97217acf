"""Readers of the data sets the tasks use (prompt sets, reference images); each module imports only what it needs."""
