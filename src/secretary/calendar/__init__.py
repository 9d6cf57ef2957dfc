"""Calendar and to-dos on CalDAV: the embedded Radicale service and the client the skills use."""
