"""The telephone: a SIP endpoint (PJSIP's Python bindings) that answers calls and speaks
with the caller through a realtime session, and keeps each call as a note."""
