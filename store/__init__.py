"""Durable state: the record store (specs and status of every kind, host claims) and the reconcile-event log.

specs/ says what a record is; store/ keeps records on disk, crash-safe, and tells watchers they changed.
"""
