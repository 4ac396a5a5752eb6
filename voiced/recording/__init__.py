"""Call recordings (``--recordings DIR``): every call as the caller lived it, in a stereo WAV
file (caller left, bot right) written as the call goes. ``timeline`` lines the two
channels up, ``wav`` keeps the file playable at every moment, ``writer`` is the one disk
thread, ``tap`` is a call's recording, ``recordings`` the service-owned whole."""
