"""The controller runtime: it knows no Docker and no Nginx, only the contract in controller.types.

runtime.py   Controller: workers, triggers (store watch, injected ones), resync, status, finalizers
queue.py     WorkQueue: per-key dedup, one reconcile per key at a time, backoff, requeue-after
backoff.py   exponential backoff with jitter
steps.py     reconciler calls under a deadline; reconcile events
status.py    conditions Ready / Reconciling / Stalled and when a status is worth writing
watch.py     which record changes wake the controller (status writes do not)
leader.py    the flock that makes one controller the writer, and controller.yaml reporting it
process.py   signals, logging and the thread pool of a controller process
"""
