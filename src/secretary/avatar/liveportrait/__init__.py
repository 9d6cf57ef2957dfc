"""The LivePortrait avatar engine (``SECRETARY_AVATAR_ENGINE=liveportrait``).

``networks`` (the five networks), ``checkpoint`` (the published files) and ``renderer``
(inference on a face crop) need only torch and numpy; ``crop`` adds OpenCV; ``engine``
plugs them into the avatar service with the Face Landmarker.
"""
