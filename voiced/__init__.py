"""voiced: a telephony voice-agent daemon on Twisted and Autobahn."""

__version__ = "0.1.0"

import os as _os

# numpy's OpenBLAS starts a thread per core at import for matrix work the daemon
# does not need in parallel (Whisper's features); on a small machine it competed
# with the reactor: measured 17% less CPU per call-minute with one thread.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
