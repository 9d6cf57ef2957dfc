"""The services on Ray Serve: one deployment per service around the same FastAPI app as on
its own port, replicas autoscaled across the nodes of a Ray cluster, speech-to-text finals
batched on the engine (``secretary serve --ray``; needs ``secretary[ray]``).

Only ``settings`` is imported without Ray installed (``secretary.config`` registers it).
"""
