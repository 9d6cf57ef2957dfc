"""Runs the secretary's SIP endpoint alone (a process of its own: one PJSIP endpoint per
process) against a registrar for a few seconds; prints its registration state as JSON."""

from __future__ import annotations

import json
import logging
import sys
import time

from secretary.phone.endpoint import SipEndpoint
from secretary.phone.settings import PhoneSettings


def main() -> None:
    registrar, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    options = PhoneSettings(_env_file=None, port=port, rtp_port=31000, registrar=registrar,
                            user="alice", password="wrong", register_retry_s=1.0)
    endpoint = SipEndpoint(options, lambda handle: None)
    endpoint.start()
    time.sleep(seconds)
    print(json.dumps(endpoint.registration), flush=True)
    endpoint.stop()


if __name__ == "__main__":
    main()
