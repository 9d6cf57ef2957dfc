"""HTTP plumbing every service shares: the app factory, the work queue, uploads, listeners."""
